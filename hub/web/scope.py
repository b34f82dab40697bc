"""Who may see what: a coordinator sees exactly one receiver in one municipality; an operator sees operations.

The rule is deliberately narrow. A Laholm SIG coordinator (receiver ``sig``, municipality ``1381``) sees the
inbox of ``deliver.sig.1381`` and nothing else: not Halmstad's SIG, not Laholm's social services, not the
lägesbild. The lägesbild pages belong to coordinators of the ``lagesbild`` receiver (a municipality's
samverkan meeting, or Länsstyrelsen with the county code 13). Operators see throughput, dead letters, lag
and the audit chain, which hold no personal data, and never an inbox.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.settings import WebUser

LAGESBILD = "lagesbild"


@dataclass(frozen=True)
class Scope:
    username: str
    user: WebUser

    @property
    def is_operator(self) -> bool:
        return self.user.role == "operator"

    def may_see_inbox(self, receiver: str, municipality: str) -> bool:
        u = self.user
        return u.role == "coordinator" and u.receiver == receiver and u.municipality == municipality

    def may_see_lagesbild(self, municipality: str) -> bool:
        return self.may_see_inbox(LAGESBILD, municipality)

    def may_operate(self) -> bool:
        return self.is_operator

    def home(self) -> str:
        """The page a user lands on after logging in."""
        u = self.user
        if self.is_operator:
            return "/operator"
        if u.receiver == LAGESBILD:
            return f"/lagesbild/{u.municipality}"
        return f"/inbox/{u.receiver}/{u.municipality}"

    def pages(self) -> list[tuple[str, str]]:
        """(path, Swedish link text) of every page this user may open, for the navigation."""
        u = self.user
        if self.is_operator:
            return [("/operator", "Drift")]
        pages = [(f"/inbox/{u.receiver}/{u.municipality}", "Inkorg")]
        if u.receiver == LAGESBILD:
            pages.insert(0, (f"/lagesbild/{u.municipality}", "Lägesbild"))
        return pages
