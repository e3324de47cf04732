"""Core statements run on asyncpg directly, for the few statements on every request's path."""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self, cast

from sqlalchemy import JSON, ClauseElement
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.sql.compiler import SQLCompiler

from app.core.database import DriverConnection

_ASYNCPG_DIALECT = asyncpg_dialect()  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class DriverQuery:
    """A Core statement compiled once to asyncpg's SQL ($1, $2, ...), which asyncpg prepares once per
    connection and caches: what SQLAlchemy's execution layer would do per call (cache-key the
    statement, process parameters and rows, hop through a greenlet) costs as much CPU as asyncpg
    itself for a small statement. Values are bound as they are, without SQLAlchemy's type
    processing: only for parameters asyncpg encodes itself (ints, strings, str enums, decimals,
    timestamps, intervals, bytes, lists), and JSON / JSONB ones, which go as their JSON text (None
    stays SQL NULL)."""

    sql: str
    parameter_names: tuple[str, ...]
    fixed_values: Mapping[str, Any]  # parameters whose value is part of the statement
    json_names: frozenset[str]  # parameters of a JSON type

    @classmethod
    def of(cls, statement: ClauseElement) -> Self:
        compiled = cast(SQLCompiler, statement.compile(dialect=_ASYNCPG_DIALECT))
        if "__[POSTCOMPILE_" in str(compiled):  # expanding IN (...) and the like are rendered per call
            raise ValueError("a statement with expanding parameters cannot be compiled once")
        names = tuple(compiled.positiontup or ())
        fixed = {name: bind.value for name, bind in compiled.binds.items() if name in names and not bind.required}
        json_names = frozenset(name for name in names if isinstance(compiled.binds[name].type, JSON))
        return cls(str(compiled), names, fixed, json_names)

    def arguments(self, values: Mapping[str, Any]) -> list[Any]:
        fixed = self.fixed_values
        arguments = [values[name] if name in values else fixed[name] for name in self.parameter_names]
        if self.json_names:
            for position, name in enumerate(self.parameter_names):
                if name in self.json_names and arguments[position] is not None:
                    arguments[position] = json.dumps(arguments[position])
        return arguments

    async def fetch(self, connection: DriverConnection, **values: Any) -> list[dict[str, Any]]:
        return [dict(record) for record in await connection.fetch(self.sql, *self.arguments(values))]

    async def fetchrow(self, connection: DriverConnection, **values: Any) -> dict[str, Any] | None:
        record = await connection.fetchrow(self.sql, *self.arguments(values))
        return None if record is None else dict(record)

    async def fetchval(self, connection: DriverConnection, **values: Any) -> Any:
        return await connection.fetchval(self.sql, *self.arguments(values))

    async def execute(self, connection: DriverConnection, **values: Any) -> str:
        """The statement's status, e.g. "UPDATE 1"."""
        status: str = await connection.execute(self.sql, *self.arguments(values))
        return status
