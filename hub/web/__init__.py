"""``hub web``: the coordinators' and operators' web app (live inbox, lägesbild, operations).

Coordinators log in and see exactly one receiver in one municipality (:mod:`hub.web.scope`); operators see
the operations page. See docs/web.md for logins, scopes, pages and settings.
"""

from hub.web.app import create_app, run_web, serve
from hub.web.auth import hash_password, new_user_entry, verify_password

__all__ = ["create_app", "hash_password", "new_user_entry", "run_web", "serve", "verify_password"]
