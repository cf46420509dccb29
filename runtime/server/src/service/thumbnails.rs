//! Thumbnails of uploaded images, in the configured `thumbnail_sizes`: a
//! request gets the closest size, made on first request (Synapse makes
//! every size of every upload in advance), stored beside the media and
//! served from disk afterwards.

use super::MatrixError;
use crate::config::{ThumbnailMethod, ThumbnailSize};
use crate::homeserver::Homeserver;
use axon::ErrCode;
use image::{DynamicImage, ImageFormat, ImageReader};
use std::io::Cursor;
use std::path::PathBuf;

/// A thumbnail ready to serve.
pub struct Thumbnail {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

/// Images decoded at once: each is CPU and memory heavy, and the rest of the
/// server must keep answering while thumbnails are made.
static THUMBNAILERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

fn cannot_thumbnail(why: &str) -> MatrixError {
    MatrixError::new(
        400,
        ErrCode::Unknown,
        format!("Cannot generate a thumbnail: {why}"),
    )
}

/// The configured size that best serves a request: of the sizes made with
/// the requested method (any method if none is), the smallest at least as
/// large as asked, else the largest.
pub fn choose_size(
    sizes: &[ThumbnailSize],
    width: u32,
    height: u32,
    method: ThumbnailMethod,
) -> Option<ThumbnailSize> {
    let same_method: Vec<ThumbnailSize> = sizes
        .iter()
        .copied()
        .filter(|s| s.method == method)
        .collect();
    let candidates = if same_method.is_empty() {
        sizes.to_vec()
    } else {
        same_method
    };
    let area = |s: &ThumbnailSize| u64::from(s.width) * u64::from(s.height);
    candidates
        .iter()
        .filter(|s| s.width >= width && s.height >= height)
        .min_by_key(|s| area(s))
        .or_else(|| candidates.iter().max_by_key(|s| area(s)))
        .copied()
}

/// What a thumbnail of an upload of this type is encoded as: JPEG stays
/// JPEG, other images become PNG (which keeps transparency), as in Synapse.
fn output_format(content_type: &str) -> Option<(ImageFormat, &'static str)> {
    match super::media::content_type_essence(content_type).as_str() {
        "image/jpeg" | "image/jpg" => Some((ImageFormat::Jpeg, "image/jpeg")),
        "image/png" | "image/gif" | "image/webp" => Some((ImageFormat::Png, "image/png")),
        _ => None,
    }
}

/// Scales or crops `source` to `size`; `scale` never enlarges.
fn render(source: &DynamicImage, size: ThumbnailSize) -> DynamicImage {
    use image::imageops::FilterType;
    let (w, h) = (source.width(), source.height());
    match size.method {
        ThumbnailMethod::Scale if w <= size.width && h <= size.height => source.clone(),
        ThumbnailMethod::Scale => source.resize(size.width, size.height, FilterType::Triangle),
        ThumbnailMethod::Crop => {
            source.resize_to_fill(size.width, size.height, FilterType::Triangle)
        }
    }
}

fn make(
    source: PathBuf,
    size: ThumbnailSize,
    format: ImageFormat,
    max_pixels: u64,
) -> Result<Vec<u8>, MatrixError> {
    let reader = || -> Result<ImageReader<std::io::BufReader<std::fs::File>>, MatrixError> {
        ImageReader::open(&source)
            .map_err(|e| MatrixError::internal(format!("cannot read media: {e}")))?
            .with_guessed_format()
            .map_err(|e| MatrixError::internal(format!("cannot read media: {e}")))
    };
    let (w, h) = reader()?
        .into_dimensions()
        .map_err(|_| cannot_thumbnail("the media is not an image Axon can read"))?;
    if u64::from(w) * u64::from(h) > max_pixels {
        return Err(cannot_thumbnail(
            "the image is larger than max_image_pixels",
        ));
    }
    let mut reader = reader()?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    reader.limits(limits);
    let source = reader
        .decode()
        .map_err(|_| cannot_thumbnail("the image cannot be decoded"))?;
    let thumbnail = render(&source, size);
    // JPEG has no alpha channel.
    let thumbnail = if format == ImageFormat::Jpeg {
        DynamicImage::ImageRgb8(thumbnail.to_rgb8())
    } else {
        thumbnail
    };
    let mut bytes = Vec::new();
    thumbnail
        .write_to(&mut Cursor::new(&mut bytes), format)
        .map_err(|e| MatrixError::internal(format!("cannot encode thumbnail: {e}")))?;
    Ok(bytes)
}

impl Homeserver {
    /// A thumbnail of the local upload `media_id`, near `width`×`height`.
    /// `None` if there is no such upload.
    pub async fn thumbnail(
        &self,
        media_id: &str,
        width: u32,
        height: u32,
        method: ThumbnailMethod,
    ) -> Result<Option<Thumbnail>, MatrixError> {
        let Some(row) = self.storage.get_media(media_id).await? else {
            return Ok(None);
        };
        let (format, content_type) = row
            .content_type
            .as_deref()
            .and_then(output_format)
            .ok_or_else(|| cannot_thumbnail("the media is not a JPEG, PNG, GIF or WebP image"))?;
        let size = choose_size(&self.config.thumbnail_sizes, width, height, method)
            .ok_or_else(|| cannot_thumbnail("no thumbnail_sizes are configured"))?;
        let method_name = match size.method {
            ThumbnailMethod::Crop => "crop",
            ThumbnailMethod::Scale => "scale",
        };
        let dir = self.config.media_store_path.join("thumbnails");
        let path = dir.join(format!(
            "{media_id}-{}x{}-{method_name}",
            size.width, size.height
        ));
        if let Ok(bytes) = tokio::fs::read(&path).await {
            return Ok(Some(Thumbnail {
                bytes,
                content_type,
            }));
        }
        let permit = THUMBNAILERS
            .acquire()
            .await
            .map_err(|e| MatrixError::internal(e.to_string()))?;
        // Another request may have made it while this one waited.
        if let Ok(bytes) = tokio::fs::read(&path).await {
            return Ok(Some(Thumbnail {
                bytes,
                content_type,
            }));
        }
        let source = self.config.media_store_path.join(media_id);
        let max_pixels = self.config.max_image_pixels;
        let bytes = tokio::task::spawn_blocking(move || make(source, size, format, max_pixels))
            .await
            .map_err(|e| MatrixError::internal(format!("thumbnailer failed: {e}")))??;
        drop(permit);
        // Written whole then renamed, so a reader never sees half a file.
        let store_error =
            |e: std::io::Error| MatrixError::internal(format!("cannot store thumbnail: {e}"));
        tokio::fs::create_dir_all(&dir).await.map_err(store_error)?;
        let partial = dir.join(format!(".partial-{}", super::random_string(12)));
        tokio::fs::write(&partial, &bytes)
            .await
            .map_err(store_error)?;
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(store_error)?;
        Ok(Some(Thumbnail {
            bytes,
            content_type,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ThumbnailMethod::*;

    fn sizes() -> Vec<ThumbnailSize> {
        crate::config::default_thumbnail_sizes()
    }

    #[test]
    fn the_smallest_size_that_covers_the_request_wins() {
        let pick = |w, h, m| choose_size(&sizes(), w, h, m).map(|s| (s.width, s.height, s.method));
        assert_eq!(pick(50, 50, Crop), Some((96, 96, Crop)));
        assert_eq!(pick(10, 10, Crop), Some((32, 32, Crop)));
        assert_eq!(pick(300, 300, Scale), Some((640, 480, Scale)));
        assert_eq!(pick(4000, 4000, Scale), Some((800, 600, Scale)));
        assert_eq!(pick(500, 500, Crop), Some((96, 96, Crop)));
        let scale_only: Vec<_> = sizes().into_iter().filter(|s| s.method == Scale).collect();
        assert_eq!(
            choose_size(&scale_only, 32, 32, Crop).map(|s| s.width),
            Some(320)
        );
        assert_eq!(choose_size(&[], 32, 32, Crop), None);
    }
}
