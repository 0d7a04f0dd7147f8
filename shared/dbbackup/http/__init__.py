"""The one framework-free HTTP layer: request/reply ``types``, the ``guard`` every endpoint sits
behind, the functions' ``endpoints``, and the one Flask translation (``flask_app``)."""
