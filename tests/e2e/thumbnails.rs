//! Thumbnails: `/_matrix/client/v1/media/thumbnail/…` and the legacy v3
//! form, `scale` and `crop` in the configured sizes, made once and reused.

use crate::client_start::{png, upload};
use axon_testkit::*;
use reqwest::Method;

async fn thumbnail(
    s: &TestServer,
    path: &str,
    token: Option<&str>,
) -> (reqwest::StatusCode, Option<String>, Vec<u8>) {
    let mut request = reqwest::Client::new().get(format!("{}{path}", s.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    (
        status,
        content_type,
        response.bytes().await.unwrap().to_vec(),
    )
}

fn dimensions(bytes: &[u8]) -> (u32, u32) {
    let image = image::load_from_memory(bytes).expect("a thumbnail is an image");
    (image.width(), image.height())
}

#[tokio::test]
async fn images_are_scaled_and_cropped_to_the_configured_sizes() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let mxc = upload(&s, &alice.token, "image/png", png(1000, 500)).await;

    // scale: the smallest configured size that covers 300×200 is 320×240;
    // the 2:1 image fits inside it as 320×160.
    let path =
        format!("/_matrix/client/v1/media/thumbnail/{mxc}?width=300&height=200&method=scale");
    let (status, content_type, bytes) = thumbnail(&s, &path, Some(&alice.token)).await;
    assert_eq!(status, 200);
    assert_eq!(content_type.as_deref(), Some("image/png"));
    assert_eq!(dimensions(&bytes), (320, 160));

    // crop: filled and cut to exactly 96×96.
    let path = format!("/_matrix/client/v1/media/thumbnail/{mxc}?width=64&height=64&method=crop");
    let (status, _, bytes) = thumbnail(&s, &path, Some(&alice.token)).await;
    assert_eq!(status, 200);
    assert_eq!(dimensions(&bytes), (96, 96));

    // method defaults to scale; the legacy path needs no token.
    let path = format!("/_matrix/media/v3/thumbnail/{mxc}?width=800&height=600");
    let (status, _, bytes) = thumbnail(&s, &path, None).await;
    assert_eq!(status, 200);
    assert_eq!(dimensions(&bytes), (800, 400));

    // The authenticated path needs one.
    let path = format!("/_matrix/client/v1/media/thumbnail/{mxc}?width=32&height=32");
    let (status, _, _) = thumbnail(&s, &path, None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_thumbnail_is_made_once_and_served_from_disk() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let mxc = upload(&s, &alice.token, "image/png", png(200, 200)).await;
    let media_id = mxc.split_once('/').unwrap().1;
    let path = format!("/_matrix/client/v1/media/thumbnail/{mxc}?width=32&height=32&method=crop");
    let (_, _, first) = thumbnail(&s, &path, Some(&alice.token)).await;
    let stored = s
        .dir
        .path()
        .join("media/thumbnails")
        .join(format!("{media_id}-32x32-crop"));
    assert_eq!(std::fs::read(&stored).unwrap(), first);
    // Served from the stored file: change it and the change is served.
    let marked = png(32, 32);
    std::fs::write(&stored, &marked).unwrap();
    let (_, _, second) = thumbnail(&s, &path, Some(&alice.token)).await;
    assert_eq!(second, marked);
}

#[tokio::test]
async fn small_images_are_not_enlarged_and_jpeg_stays_jpeg() {
    let s = TestServer::start().await;
    let alice = s.register("alice").await;
    let mut jpeg = Vec::new();
    image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
        100,
        50,
        image::Rgb([200, 10, 10]),
    ))
    .write_to(
        &mut std::io::Cursor::new(&mut jpeg),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    let mxc = upload(&s, &alice.token, "image/jpeg", jpeg).await;
    let path = format!("/_matrix/client/v1/media/thumbnail/{mxc}?width=640&height=480");
    let (status, content_type, bytes) = thumbnail(&s, &path, Some(&alice.token)).await;
    assert_eq!(status, 200);
    assert_eq!(content_type.as_deref(), Some("image/jpeg"));
    assert_eq!(dimensions(&bytes), (100, 50));
}

#[tokio::test]
async fn bad_thumbnail_requests_get_matrix_errors() {
    let s = TestServer::start_with("max_image_pixels: 10K").await;
    let alice = s.register("alice").await;
    let image = upload(&s, &alice.token, "image/png", png(40, 40)).await;
    let text = upload(&s, &alice.token, "text/plain", b"hello".to_vec()).await;
    let fake = upload(&s, &alice.token, "image/png", b"not a png".to_vec()).await;
    let huge = upload(&s, &alice.token, "image/png", png(200, 100)).await;
    let get = |path: String| {
        let s = &s;
        let token = alice.token.clone();
        async move {
            s.request(
                Method::GET,
                &format!("/_matrix/client/v1/media/thumbnail/{path}"),
                Some(&token),
                None,
            )
            .await
        }
    };
    assert_error(
        &get(format!("{image}?height=32")).await,
        400,
        "M_MISSING_PARAM",
    );
    assert_error(
        &get(format!("{image}?width=32")).await,
        400,
        "M_MISSING_PARAM",
    );
    assert_error(
        &get(format!("{image}?width=-3&height=32")).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &get(format!("{image}?width=32&height=32&method=stretch")).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &get(format!("{text}?width=32&height=32")).await,
        400,
        "M_UNKNOWN",
    );
    assert_error(
        &get(format!("{fake}?width=32&height=32")).await,
        400,
        "M_UNKNOWN",
    );
    // 200×100 = 20,000 pixels, over the 10K limit: refused before decoding.
    assert_error(
        &get(format!("{huge}?width=32&height=32")).await,
        400,
        "M_UNKNOWN",
    );
    assert_error(
        &get("test.local/nosuchmedia?width=32&height=32".into()).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &get("elsewhere.org/abc?width=32&height=32".into()).await,
        404,
        "M_NOT_FOUND",
    );
}
