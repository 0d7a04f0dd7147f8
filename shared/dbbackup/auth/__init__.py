"""Who is calling: the ``Authenticator`` and its ``Verifier``/``RoleDirectory`` protocols, its
configuration, and the Google OIDC and Supabase JWT verifiers."""
