//! A user's devices: listed, renamed, and deleted behind user-interactive
//! auth (a deleted device's access token stops working at once).

use super::uia::UiaRefusal;
use super::{Actor, MatrixError};
use crate::homeserver::Homeserver;
use crate::storage::DeviceRow;
use axon::callbacks::JsonObject;
use axon::ErrCode;
use ruma::{DeviceId, OwnedDeviceId};

fn no_device() -> MatrixError {
    MatrixError::new(404, ErrCode::NotFound, "Device not found")
}

impl Homeserver {
    pub async fn devices(&self, actor: &Actor) -> Result<Vec<DeviceRow>, MatrixError> {
        Ok(self.storage.devices_of(&actor.user_id).await?)
    }

    pub async fn device(&self, actor: &Actor, device: &DeviceId) -> Result<DeviceRow, MatrixError> {
        self.devices(actor)
            .await?
            .into_iter()
            .find(|d| d.device_id == device)
            .ok_or_else(no_device)
    }

    /// `PUT /devices/{id}`: renames one of the user's devices.
    pub async fn rename_device(
        &self,
        actor: &Actor,
        device: &DeviceId,
        display_name: Option<String>,
    ) -> Result<(), MatrixError> {
        if let Some(name) = &display_name {
            if name.len() > 100 {
                return Err(MatrixError::new(
                    400,
                    ErrCode::TooLarge,
                    "Device display name is too long (max 100)",
                ));
            }
        }
        if self
            .storage
            .rename_device(&actor.user_id, device, display_name)
            .await?
        {
            Ok(())
        } else {
            Err(no_device())
        }
    }

    /// `DELETE /devices/{id}` and `POST /delete_devices`: once the user has
    /// authenticated for exactly these devices, they are logged out and
    /// `on_logged_out` hears of each.
    pub async fn delete_devices(
        &self,
        actor: &Actor,
        mut devices: Vec<OwnedDeviceId>,
        auth: Option<JsonObject>,
    ) -> Result<(), UiaRefusal> {
        devices.sort();
        devices.dedup();
        let operation = format!(
            "delete devices {}",
            devices
                .iter()
                .map(|d| d.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        self.user_interactive_auth(&actor.user_id, operation, auth)
            .await?;
        let gone = self
            .storage
            .delete_devices(&actor.user_id, devices)
            .await
            .map_err(MatrixError::from)?;
        self.logged_out(&actor.user_id, &gone).await;
        Ok(())
    }
}
