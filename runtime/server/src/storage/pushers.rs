//! Pushers and the notifications they push: a pusher remembers the last
//! notification it delivered, so after a restart it resumes there.

use super::events::{event_from_row, EVENT_COLUMNS};
use super::{id, Storage, StorageResult, StoredEvent};
use ruma::{OwnedDeviceId, OwnedUserId, UserId};
use rusqlite::{params, OptionalExtension};

/// A pusher as stored (Synapse's fields).
#[derive(Debug, Clone, PartialEq)]
pub struct PusherRow {
    pub user_id: OwnedUserId,
    pub app_id: String,
    pub pushkey: String,
    pub kind: String,
    pub app_display_name: String,
    pub device_display_name: String,
    pub profile_tag: String,
    pub lang: String,
    /// The `data` object, as JSON.
    pub data: String,
    /// The device that set it: its pushers go when it is logged out.
    pub device_id: OwnedDeviceId,
    pub pushkey_ts: i64,
    pub last_stream_ordering: i64,
    pub failing_since: Option<i64>,
}

const PUSHER_COLUMNS: &str =
    "user_id, app_id, pushkey, kind, app_display_name, device_display_name, \
     profile_tag, lang, data, device_id, pushkey_ts, last_stream_ordering, failing_since";

fn pusher_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PusherRow> {
    Ok(PusherRow {
        user_id: id(r, 0)?,
        app_id: r.get(1)?,
        pushkey: r.get(2)?,
        kind: r.get(3)?,
        app_display_name: r.get(4)?,
        device_display_name: r.get(5)?,
        profile_tag: r.get(6)?,
        lang: r.get(7)?,
        data: r.get(8)?,
        device_id: r.get::<_, String>(9)?.into(),
        pushkey_ts: r.get(10)?,
        last_stream_ordering: r.get(11)?,
        failing_since: r.get(12)?,
    })
}

/// One notification of a user: the event, how it notifies, and whether the
/// user has read up to it.
#[derive(Debug, Clone)]
pub struct NotificationRow {
    pub event: StoredEvent,
    pub actions: String,
    pub highlight: bool,
    pub read: bool,
}

/// The user's read position in the event's room (unthreaded or main-thread
/// receipt, public or private), as the unread counts use it.
const READ_UPTO: &str = "(SELECT COALESCE(MAX(re.stream_ordering), 0) FROM receipts r
     JOIN events re ON re.event_id = r.event_id
     WHERE r.room_id = a.room_id AND r.user_id = a.user_id
       AND r.receipt_type IN ('m.read', 'm.read.private') AND r.thread_id IN ('', 'main'))";

/// The notifications of user `?1` as `a`, found through the rooms they are
/// in: `event_push_actions` is keyed by room and position (so that a
/// message's rows for its members are one append), with no index by user.
const USER_NOTIFICATIONS: &str = "memberships m
     JOIN event_push_actions a ON a.room_id = m.room_id AND a.user_id = m.user_id";

impl Storage {
    /// Adds or replaces the user's pusher for `(app_id, pushkey)`. Unless
    /// `append`, the same pushkey of the same app is taken from any other
    /// user (the device changed hands). A new pusher starts at the current
    /// position: it pushes what comes next, not the past.
    pub async fn set_pusher(&self, pusher: PusherRow, append: bool) -> StorageResult<()> {
        self.write(move |w| {
            if !append {
                w.conn.execute(
                    "DELETE FROM pushers WHERE app_id = ?1 AND pushkey = ?2 AND user_id != ?3",
                    params![pusher.app_id, pusher.pushkey, pusher.user_id.as_str()],
                )?;
            }
            let start = super::schema::max_position(w.conn)?;
            w.conn.execute(
                &format!(
                    "INSERT INTO pushers ({PUSHER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, NULL)
                     ON CONFLICT (app_id, pushkey, user_id) DO UPDATE SET kind = excluded.kind,
                       app_display_name = excluded.app_display_name,
                       device_display_name = excluded.device_display_name,
                       profile_tag = excluded.profile_tag, lang = excluded.lang, data = excluded.data,
                       device_id = excluded.device_id, pushkey_ts = excluded.pushkey_ts"
                ),
                params![
                    pusher.user_id.as_str(),
                    pusher.app_id,
                    pusher.pushkey,
                    pusher.kind,
                    pusher.app_display_name,
                    pusher.device_display_name,
                    pusher.profile_tag,
                    pusher.lang,
                    pusher.data,
                    pusher.device_id.as_str(),
                    pusher.pushkey_ts,
                    start,
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// Removes a pusher; false if there was none.
    pub async fn delete_pusher(
        &self,
        user_id: &UserId,
        app_id: &str,
        pushkey: &str,
    ) -> StorageResult<bool> {
        let (user_id, app_id, pushkey) =
            (user_id.to_string(), app_id.to_string(), pushkey.to_string());
        self.write(move |w| {
            Ok(w.conn.execute(
                "DELETE FROM pushers WHERE user_id = ?1 AND app_id = ?2 AND pushkey = ?3",
                params![user_id, app_id, pushkey],
            )? > 0)
        })
        .await
    }

    /// One user's pushers, or every pusher with `None`.
    pub async fn pushers(&self, user_id: Option<&UserId>) -> StorageResult<Vec<PusherRow>> {
        let user_id = user_id.map(UserId::to_string);
        self.read(move |c| {
            let rows = match &user_id {
                Some(user) => c
                    .prepare_cached(&format!(
                        "SELECT {PUSHER_COLUMNS} FROM pushers WHERE user_id = ?1 ORDER BY app_id, pushkey"
                    ))?
                    .query_map([user], pusher_from_row)?
                    .collect::<Result<Vec<_>, _>>()?,
                None => c
                    .prepare_cached(&format!("SELECT {PUSHER_COLUMNS} FROM pushers"))?
                    .query_map([], pusher_from_row)?
                    .collect::<Result<Vec<_>, _>>()?,
            };
            Ok(rows)
        })
        .await
    }

    pub async fn pusher(
        &self,
        user_id: &UserId,
        app_id: &str,
        pushkey: &str,
    ) -> StorageResult<Option<PusherRow>> {
        let (user_id, app_id, pushkey) =
            (user_id.to_string(), app_id.to_string(), pushkey.to_string());
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {PUSHER_COLUMNS} FROM pushers WHERE user_id = ?1 AND app_id = ?2 AND pushkey = ?3"
            ))?
            .query_row(params![user_id, app_id, pushkey], pusher_from_row)
            .optional()?)
        })
        .await
    }

    /// Records a pusher's progress; false if the pusher is gone.
    pub async fn pusher_progress(
        &self,
        pusher: &PusherRow,
        last_stream_ordering: i64,
        failing_since: Option<i64>,
    ) -> StorageResult<bool> {
        let (user_id, app_id, pushkey) = (
            pusher.user_id.to_string(),
            pusher.app_id.clone(),
            pusher.pushkey.clone(),
        );
        self.write(move |w| {
            Ok(w.conn.execute(
                "UPDATE pushers SET last_stream_ordering = ?4, failing_since = ?5
                 WHERE user_id = ?1 AND app_id = ?2 AND pushkey = ?3",
                params![
                    user_id,
                    app_id,
                    pushkey,
                    last_stream_ordering,
                    failing_since
                ],
            )? > 0)
        })
        .await
    }

    /// The user's notifications after `after` that they have not read yet,
    /// oldest first: what a pusher still has to push.
    pub async fn unread_notifications_after(
        &self,
        user_id: &UserId,
        after: i64,
        limit: u32,
    ) -> StorageResult<Vec<NotificationRow>> {
        let user_id = user_id.to_string();
        self.read(move |c| {
            let rows = c
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS}, a.actions, a.highlight FROM {USER_NOTIFICATIONS}
                     JOIN events e ON e.stream_ordering = a.stream_ordering
                     WHERE m.user_id = ?1 AND m.membership = 'join'
                       AND a.stream_ordering > ?2 AND a.stream_ordering > {READ_UPTO}
                     ORDER BY a.stream_ordering LIMIT ?3"
                ))?
                .query_map(params![user_id, after, limit], |r| {
                    Ok(NotificationRow {
                        event: event_from_row(r)?,
                        actions: r.get(12)?,
                        highlight: r.get(13)?,
                        read: false,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// `GET /notifications`: the user's notifications before `before`,
    /// newest first, each saying whether it has been read.
    pub async fn notifications(
        &self,
        user_id: &UserId,
        before: Option<i64>,
        limit: u32,
        only_highlight: bool,
    ) -> StorageResult<Vec<NotificationRow>> {
        let user_id = user_id.to_string();
        self.read(move |c| {
            let rows = c
                .prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS}, a.actions, a.highlight, a.stream_ordering <= {READ_UPTO}
                     FROM {USER_NOTIFICATIONS}
                     JOIN events e ON e.stream_ordering = a.stream_ordering
                     WHERE m.user_id = ?1 AND m.membership = 'join'
                       AND a.stream_ordering < ?2 AND (?3 = 0 OR a.highlight = 1)
                     ORDER BY a.stream_ordering DESC LIMIT ?4"
                ))?
                .query_map(
                    params![user_id, before.unwrap_or(i64::MAX), only_highlight, limit],
                    |r| {
                        Ok(NotificationRow {
                            event: event_from_row(r)?,
                            actions: r.get(12)?,
                            highlight: r.get(13)?,
                            read: r.get(14)?,
                        })
                    },
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// The badge a push shows: rooms with unread notifications (Synapse's
    /// default, `group_unread_count_by_room`).
    pub async fn rooms_with_unread(&self, user_id: &UserId) -> StorageResult<u64> {
        let user_id = user_id.to_string();
        self.read(move |c| {
            let n: i64 = c
                .prepare_cached(
                    "SELECT COUNT(*) FROM memberships m
                     JOIN unread_counts u ON u.room_id = m.room_id AND u.user_id = m.user_id
                     WHERE m.user_id = ?1 AND m.membership = 'join' AND u.notifications > 0",
                )?
                .query_row([user_id], |r| r.get(0))?;
            Ok(n as u64)
        })
        .await
    }
}
