"""Users: name, role, full name (DICOM Person Name) and a salted password hash."""

from __future__ import annotations

from rtexport.model.people import Role, User
from rtexport.workspace.db import Database
from rtexport.workspace.seals import Seals


class UserRepository:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._seals = Seals(db)

    def add(self, user: User, password_hash: str, created_at: str) -> None:
        self._db.execute(
            "INSERT INTO users (name, role, password_hash, created_at, full_name) VALUES (?,?,?,?,?)",
            (user.name, user.role.value, password_hash, created_at, user.full_name),
        )
        self._seals.seal("users", user.name)

    def exists(self, name: str) -> bool:
        return self._db.one("SELECT 1 FROM users WHERE name = ?", (name,)) is not None

    def get(self, name: str) -> tuple[User, str] | None:
        """The user and their stored password hash."""
        row = self._db.one("SELECT * FROM users WHERE name = ?", (name,))
        if row is None:
            return None
        return User(row["name"], Role(row["role"]), row["full_name"]), str(row["password_hash"])

    def all(self) -> list[User]:
        return [
            User(r["name"], Role(r["role"]), r["full_name"]) for r in self._db.all("SELECT * FROM users ORDER BY name")
        ]

    def count(self, role: Role | None = None) -> int:
        if role is None:
            row = self._db.one("SELECT COUNT(*) AS n FROM users")
        else:
            row = self._db.one("SELECT COUNT(*) AS n FROM users WHERE role = ?", (role.value,))
        return 0 if row is None else int(row["n"])

    def set_role(self, name: str, role: Role) -> None:
        self._db.execute("UPDATE users SET role = ? WHERE name = ?", (role.value, name))
        self._seals.seal("users", name)

    def set_password(self, name: str, password_hash: str) -> None:
        self._db.execute("UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, name))
        self._seals.seal("users", name)
