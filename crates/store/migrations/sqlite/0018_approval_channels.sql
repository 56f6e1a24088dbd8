-- Approvals delivered by chat and e-mail: one row per message sent (an approval to a chat
-- target, or to one approver's mailbox), so a message is sent once whichever process serves;
-- and the nonces of e-mail decision links already used (a link decides once).
CREATE TABLE approval_deliveries (
    approval_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    target TEXT NOT NULL,
    recipient TEXT NOT NULL,
    reference TEXT,
    delivered_at INTEGER NOT NULL,
    PRIMARY KEY (approval_id, channel, target, recipient)
) WITHOUT ROWID;
CREATE TABLE approval_link_uses (
    nonce TEXT PRIMARY KEY,
    approval_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    decision TEXT NOT NULL,
    used_at INTEGER NOT NULL
) WITHOUT ROWID;
