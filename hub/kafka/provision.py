"""Provisioning a cluster's identities: a SCRAM user per principal and the ACLs of :mod:`hub.kafka.acls`.

Run by ``hub kafka up`` (as the broker's own certificate, before any user exists), by ``hub acl apply`` and
``hub topics create`` (as ``admin``), and by the compose ``topics`` job. Passwords come from the security
folder (:class:`hub.kafka.pki.Pki`): a missing one is made there, an existing SCRAM user is left as it is
(rotate with ``hub kafka rotate PRINCIPAL``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from hub import identity
from hub.kafka.acls import AclChange, apply_grants, scram_users, upsert_scram_users
from hub.kafka.clients import KafkaAccess
from hub.kafka.pki import Pki
from hub.settings import HubSettings

log = logging.getLogger(__name__)


def catalogue(settings: HubSettings) -> list[identity.Principal]:
    return identity.principals(settings.municipality_codes, settings.county_code)


@dataclass
class Provisioned:
    users_created: list[str]
    acls: AclChange


def ensure_users(access: KafkaAccess, pki: Pki, settings: HubSettings) -> list[str]:
    """Create the SCRAM user of every catalogued principal that has none yet; return their names."""
    existing = scram_users(access)
    wanted = {p.name: pki.ensure_password(p.name) for p in catalogue(settings) if p.name not in existing}
    return upsert_scram_users(access, wanted, mechanism=settings.kafka.sasl_mechanism)


def apply_acls(access: KafkaAccess, settings: HubSettings) -> AclChange:
    return apply_grants(access, catalogue(settings), namespace=settings.topic_namespace,
                        app_id=settings.worker.app_id)


def provision_local(access: KafkaAccess, pki: Pki, settings: HubSettings) -> Provisioned:
    created = ensure_users(access, pki, settings)
    change = apply_acls(access, settings)
    log.info("provisioned %d SCRAM users and %d ACL bindings", len(created), len(change.created))
    return Provisioned(created, change)
