-- Dashboard accounts: users (argon2 password hashes), workspace members
-- with roles, and web sessions. A session's token lives only in the
-- browser's cookie; the database keeps its SHA-256, so a leaked database
-- cannot be replayed as a login. Login throttling is kept in memory (see
-- docs/DASHBOARD.md).

CREATE TABLE users (
    id             INTEGER PRIMARY KEY,
    -- Lower-cased, trimmed.
    email          TEXT NOT NULL UNIQUE,
    -- PHC string ($argon2id$v=19$...).
    password_hash  TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    last_login_at  INTEGER
);

CREATE TABLE workspace_members (
    workspace_id  INTEGER NOT NULL REFERENCES workspaces(id),
    user_id       INTEGER NOT NULL REFERENCES users(id),
    -- admin | member
    role          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX workspace_members_user ON workspace_members(user_id);

CREATE TABLE web_sessions (
    token_hash    TEXT PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users(id),
    workspace_id  INTEGER NOT NULL REFERENCES workspaces(id),
    -- The synchronizer token every form of this session carries.
    csrf_token    TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions(user_id);
CREATE INDEX web_sessions_expires ON web_sessions(expires_at);
