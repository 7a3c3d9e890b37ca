"""The one exception hierarchy of datazones.

Every error is either *terminal* (retrying cannot help: bad config, a contract violation, a missing key) or
*transient* (a lock held by another run, a network blip). Orchestrators map terminal errors to "fail, do not retry"
and transient ones to "retry" (the same split dlt uses). Messages say what is wrong and what to do next.
"""

from __future__ import annotations


class DatazonesError(Exception):
    """Root of every datazones error."""

    transient: bool = False


class TerminalError(DatazonesError):
    """Retrying will not help; a person has to change something."""


class TransientError(DatazonesError):
    """Retrying later may succeed."""

    transient = True


class ConfigError(TerminalError):
    """zones.yaml (or its environment overrides) is wrong. The message names the file, line and key path."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key_path: str | None = None, fix: str | None = None) -> None:
        self.file, self.line, self.key_path, self.fix = file, line, key_path, fix
        where = ""
        if file:
            where = f"{file}:{line}: " if line else f"{file}: "
        key = f"{key_path}: " if key_path else ""
        tail = f"\n  fix: {fix}" if fix else ""
        super().__init__(f"{where}{key}{message}{tail}")


class MissingSecretError(ConfigError):
    """A key needed for pseudonymisation or sealing is missing or unusable in the environment (fail closed): a
    configuration error (exit 2), terminal like every ConfigError."""


class SchemaChangeError(TerminalError):
    """The hot table changed in a way warm cannot follow (an incompatible type change)."""


class IntegrityError(TerminalError):
    """Stored data does not match its proof (ledger chain, seal tag, checksum)."""


class LockHeldError(TransientError):
    """Another run holds the writer lock of this warm table."""
