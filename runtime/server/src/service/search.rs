//! `POST /search`: the room events a user may see whose words match.

use super::{Actor, MatrixError};
use crate::homeserver::Homeserver;
use crate::storage::StoredEvent;
use axon::Membership;
use ruma::OwnedRoomId;

/// A page of search results: each event with its rank, the total count,
/// and the words highlighted.
pub struct SearchResults {
    pub results: Vec<(StoredEvent, f64)>,
    pub count: u64,
    pub words: Vec<String>,
    pub next_skip: Option<u32>,
}

/// The words of a search term: letters and digits, lower-cased.
fn words_of(term: &str) -> Vec<String> {
    term.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

impl Homeserver {
    /// Searches the rooms the user is joined to (those of `only_rooms`, if
    /// given) for events matching every word of `term`.
    pub async fn search_room_events(
        &self,
        actor: &Actor,
        term: &str,
        only_rooms: Option<Vec<OwnedRoomId>>,
        by_rank: bool,
        skip: u32,
        limit: u32,
    ) -> Result<SearchResults, MatrixError> {
        let words = words_of(term);
        let mut rooms: Vec<OwnedRoomId> = self
            .storage
            .memberships(&actor.user_id)
            .await?
            .into_iter()
            .filter(|m| m.membership == Membership::Join)
            .map(|m| m.room_id)
            .collect();
        if let Some(only) = only_rooms {
            rooms.retain(|r| only.contains(r));
        }
        if words.is_empty() || rooms.is_empty() {
            return Ok(SearchResults {
                results: Vec::new(),
                count: 0,
                words,
                next_skip: None,
            });
        }
        let (found, count) = self
            .storage
            .search_events(rooms, words.clone(), by_rank, skip, limit)
            .await?;
        let next_skip = (u64::from(skip) + found.len() as u64) < count;
        let next_skip = next_skip.then_some(skip + found.len() as u32);
        let mut results = Vec::new();
        for (event, rank) in found {
            let room = event.room_id.clone();
            if let Some(event) = self
                .visible_events(&actor.user_id, &room, vec![event])
                .await?
                .pop()
            {
                results.push((event, rank));
            }
        }
        Ok(SearchResults {
            results,
            count,
            words,
            next_skip,
        })
    }
}
