"""Declarative routing rules and the receiver catalogue they are checked against."""

from hub.rules.model import DEFAULT_RULES, Delivery, Rule, RuleError, RuleSet, load_rules
from hub.rules.receivers import RECEIVERS, Basis, PersonDisclosure, Receiver

__all__ = [
    "DEFAULT_RULES", "RECEIVERS", "Basis", "Delivery", "PersonDisclosure", "Receiver", "Rule", "RuleError",
    "RuleSet", "load_rules",
]  # fmt: skip
