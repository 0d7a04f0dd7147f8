"""Who is who in the security tests: the users of tests/fixtures/supabase_app.sql and the
service accounts and audience of the scheduler tokens."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .jwks_fake import SupabaseJwksFake
    from .oidc_fake import GoogleCertsFake

MANAGER = "00000000-0000-0000-0000-00000000000a"
ADMIN = "00000000-0000-0000-0000-00000000000b"
CLERK = "00000000-0000-0000-0000-00000000000c"  # role "user"
STRANGER = "00000000-0000-0000-0000-0000000000ff"  # no user_profiles row
SCHEDULER_SA = "scheduler@test-project.iam.gserviceaccount.com"
OTHER_SA = "intruder@test-project.iam.gserviceaccount.com"
AUDIENCE = "https://database-backup-test.a.run.app"


@dataclass
class Secured:
    url: str
    root: Path
    env: dict[str, str]


def auth_env(google_certs: GoogleCertsFake, supabase: SupabaseJwksFake, url: str, root: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": url,
        "BACKUP_LOCAL_ROOT": str(root),
        "SCHEDULER_SERVICE_ACCOUNT": SCHEDULER_SA,
        "SCHEDULER_AUDIENCE": AUDIENCE,
        "GOOGLE_CERTS_URL": google_certs.certs_url,
        "SUPABASE_JWT_SECRET": supabase.jwt_secret,
        "SUPABASE_JWKS_URL": supabase.jwks_url,
        "SUPABASE_JWT_ISSUER": supabase.issuer,
        "ALLOWED_ORIGINS": "https://app.example.com",
    }
