"""ContractService: model versions' data contracts as the platform serves them.

A version's contract is the JSON artifact ``loopml.log_model`` logged (named by its
``loopml.contract`` tag, which the registry vouches for as it does the reference sample's)
with the users' overrides on top, kept in the platform DB (:class:`ContractOverrideRow`).
The effective contract is cached per version; a change of the overrides replaces the cached
one and tells the listeners of :attr:`ContractService.on_change` (the serving slice, which
reconfigures the endpoints serving that version).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from loopml.db import Database, utcnow
from loopml.errors import Conflict, InvalidInput
from loopml.registry import tags as tag
from loopml.registry.contract import DataContract, apply_overrides, merge_overrides, parse_overrides
from loopml.registry.models import ContractView
from loopml.registry.names import registered_name
from loopml.registry.orm import ContractOverrideRow

if TYPE_CHECKING:
    from loopml.registry.service import RegistryService

log = logging.getLogger(__name__)

CACHE = 256  # versions whose effective contract is kept
MAX_BYTES = 4 << 20  # a contract file larger than this is refused unread (it is user-written)


class ContractService:
    """Reads versions' contracts and changes their overrides.

    ``on_change`` holds callables ``(registered model, version) -> [endpoint, …]`` run after an
    override change, each answering the endpoints it moved to the new contract.
    """

    def __init__(self, db: Database, registry: RegistryService) -> None:
        self.db = db
        self.registry = registry
        self.on_change: list[Callable[[str, int], list[str]]] = []
        self._cache: OrderedDict[tuple[str, int], DataContract | None] = OrderedDict()
        self._lock = threading.Lock()

    def logged(self, model: str, version: int) -> DataContract | None:
        """The contract ``version`` of registered ``model`` was logged with; ``None`` without one.
        :class:`InvalidInput` for a tag that is no artifact of the version's own run or a file
        that is no contract, :class:`NotFound` for an unknown version, :class:`Unavailable`."""
        return self.registry.read_tagged(model, version, tag.CONTRACT, partial(_read_contract, model, version),
                                         "data contract")

    def effective(self, model: str, version: int) -> DataContract | None:
        """The logged contract with the overrides applied (cached); errors as :meth:`logged`."""
        key = (model, version)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        logged = self.logged(model, version)
        overrides = self._overrides(model, version)
        found = apply_overrides(logged, overrides.rules) if logged is not None and overrides else logged
        self._remember(key, found)
        return found

    def _remember(self, key: tuple[str, int], contract: DataContract | None) -> None:
        with self._lock:
            self._cache[key] = contract
            self._cache.move_to_end(key)
            while len(self._cache) > CACHE:
                self._cache.popitem(last=False)

    def _overrides(self, model: str, version: int) -> ContractOverrideRow | None:
        with self.db.session() as session:
            row = session.get(ContractOverrideRow, (model, version))
            if row is not None:
                session.expunge(row)
            return row

    def get(self, project: str, name: str, version: int) -> ContractView:
        """Version ``version`` of the project's model ``name``: its effective contract and overrides."""
        full = registered_name(project, name)
        row = self._overrides(full, version)
        return ContractView(model=name, version=version, contract=self.effective(full, version),
                            overrides=row.rules if row else {}, updated_by=row.updated_by if row else None,
                            updated_at=row.updated_at if row else None)

    def update(self, project: str, name: str, version: int, sets: Iterable[str], *, user: str) -> ContractView:
        """Apply ``feature.rule=value`` overrides to the version's contract (merged with the
        earlier ones) and move the endpoints serving it to the result, live. :class:`InvalidInput`
        naming the feature and rule, :class:`Conflict` for a version without a contract."""
        sets = list(sets)
        full = registered_name(project, name)
        logged = self.logged(full, version)
        if logged is None:
            raise Conflict(f"version {version} of {name} has no data contract to override: loopml.log_model "
                           "derives one when X_train is a DataFrame (with column names)", model=f"{name}/{version}")
        parsed = parse_overrides(logged, sets)
        with self.db.session() as session:
            row = session.get(ContractOverrideRow, (full, version))
            merged = merge_overrides(row.rules if row else {}, parsed)
            effective = apply_overrides(logged, merged)
            if row is None:
                row = ContractOverrideRow(project=project, model=full, version=version, rules={}, updated_by=user)
                session.add(row)
            row.rules, row.updated_by, row.updated_at = merged, user, utcnow()
            session.flush()
            session.expunge(row)
        self._remember((full, version), effective)
        log.info("%s changed the data contract of %s/%s: %s", user, full, version, ", ".join(sets))
        moved = [endpoint for listener in self.on_change for endpoint in listener(full, version)]
        return ContractView(model=name, version=version, contract=effective, overrides=row.rules,
                            updated_by=row.updated_by, updated_at=row.updated_at, endpoints=moved)


def _read_contract(model: str, version: int, path: Path) -> DataContract:
    if path.stat().st_size > MAX_BYTES:
        raise InvalidInput(f"the data contract of {model}/{version} is over {MAX_BYTES >> 20} MiB: it is not one "
                           "loopml.log_model wrote", field="contract")
    try:
        return DataContract.model_validate(json.loads(path.read_text()))
    except (ValueError, ValidationError):
        raise InvalidInput(f"the data contract of {model}/{version} is not a loopml data contract",
                           field="contract") from None


__all__ = ["ContractService"]
