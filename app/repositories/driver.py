"""Core statements run on asyncpg directly, for the few statements on every request's path."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self, cast

from sqlalchemy import ClauseElement
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
    processing: only for parameters asyncpg encodes itself (ints, strings, str enums, intervals,
    bytes); a jsonb parameter would need its JSON text."""

    sql: str
    parameter_names: tuple[str, ...]
    fixed_values: Mapping[str, Any]  # parameters whose value is part of the statement

    @classmethod
    def of(cls, statement: ClauseElement) -> Self:
        compiled = cast(SQLCompiler, statement.compile(dialect=_ASYNCPG_DIALECT))
        if "__[POSTCOMPILE_" in str(compiled):  # expanding IN (...) and the like are rendered per call
            raise ValueError("a statement with expanding parameters cannot be compiled once")
        names = tuple(compiled.positiontup or ())
        fixed = {name: bind.value for name, bind in compiled.binds.items() if name in names and not bind.required}
        return cls(str(compiled), names, fixed)

    def arguments(self, values: Mapping[str, Any]) -> list[Any]:
        fixed = self.fixed_values
        return [values[name] if name in values else fixed[name] for name in self.parameter_names]

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
