//! One callback from every category, written as the catalog declares it.
use axon::prelude::*;

pub struct Everything;

#[module]
impl Everything {
    fn new(_api: &ModuleApi) -> Self {
        Everything
    }

    #[callback(spam_checker)]
    async fn check_event_for_spam(&self, _event: &Event) -> SpamCheck {
        SpamCheck::NotSpam
    }

    #[callback(spam_checker)]
    async fn check_media_file_for_spam(&self, content: &[u8], _info: &FileInfo) -> SpamCheck {
        if content.is_empty() { SpamCheck::deny(ErrCode::Forbidden) } else { SpamCheck::NotSpam }
    }

    #[callback(third_party_rules)]
    async fn check_event_allowed(&self, event: &Event, _state: &StateMap) -> EventAllowed {
        EventAllowed::Replace(Box::new(event.clone()))
    }

    #[callback(third_party_rules)]
    async fn check_can_shutdown_room(&self, user: Option<&UserId>, _room: &RoomId) -> bool {
        user.is_some()
    }

    #[callback(account_validity)]
    async fn is_user_expired(&self, _user: &UserId) -> Result<Option<bool>, ModuleError> {
        Ok(None)
    }

    #[callback(password_auth_provider)]
    async fn check_auth(&self, _user: &str, _login_type: &str, _login: &JsonObject) -> Option<AuthResult> {
        None
    }

    #[callback(background_update_controller)]
    async fn on_update(&self, _update_name: &str, _database_name: &str, _one_shot: bool) -> Duration {
        Duration::from_millis(100)
    }

    #[callback(account_data)]
    async fn on_account_data_updated(&self, _user: &UserId, _room: Option<&RoomId>, _kind: &str, _content: &JsonObject) {}

    #[callback(add_extra_fields_to_unsigned_client_event)]
    async fn add_field_to_unsigned_callback(&self, _event: &Event) -> JsonObject {
        JsonObject::new()
    }

    #[callback(ratelimit)]
    async fn get_ratelimit_override_for_user(&self, _user: &UserId, _limiter: &str) -> Option<RatelimitOverride> {
        Some(RatelimitOverride { per_second: 0.0, burst_count: 0 })
    }

    #[callback(media_repository)]
    async fn get_media_upload_limits_for_user(&self, _user: &UserId) -> Option<Vec<MediaUploadLimit>> {
        Some(vec![])
    }
}

fn main() {}
