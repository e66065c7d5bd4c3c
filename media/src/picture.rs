//! Decoding, resizing and re-encoding one image. Blocking, CPU-bound code: call it from
//! `spawn_blocking`.
//!
//! The format is guessed from the bytes (never from a URL or a Content-Type). Before any pixel
//! buffer is allocated the header's dimensions are checked against [`MAX_SIDE`] and the decoded
//! size against [`MAX_DECODED_BYTES`]; the same bounds go to the decoder as `image::Limits`, so
//! a decompression bomb (a tiny file declaring 40,000 × 40,000 pixels) is refused at its header.
//! The result is a baseline JPEG whose longest side is at most [`MAX_OUTPUT_SIDE`] and whose size
//! is at most [`MAX_OUTPUT_BYTES`] (WhatsApp takes 5 MB; phones show ~1600 px).

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits, RgbImage};

use crate::MediaError;

/// Longest side accepted, in pixels (input).
pub const MAX_SIDE: u32 = 8_192;
/// Most memory one decode may allocate. 160 MiB holds a 48-megapixel phone photo decoded as
/// RGB (8064 × 6048 × 3 = 146 MB) and anything up to 8192 × 5120 in RGBA; larger pixel buffers
/// (e.g. 8192 × 8192 RGBA, 256 MiB, or any 16-bit image that size) are refused.
pub const MAX_DECODED_BYTES: u64 = 160 * 1024 * 1024;
/// Longest side sent, in pixels: what WhatsApp shows on a phone; larger images are scaled down.
pub const MAX_OUTPUT_SIDE: u32 = 1_600;
/// JPEG quality of the first attempt.
pub const QUALITY: u8 = 80;
/// The re-encoded image is at most this big (WhatsApp allows 5 MB; far smaller sends faster and
/// keeps the dispatcher's memory small).
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;

/// A processed image.
pub struct Processed {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// The format the input was in.
    pub format: ImageFormat,
}

fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    limits
}

/// Decodes `bytes` (JPEG, PNG, WebP or GIF's first frame), scales it down to
/// [`MAX_OUTPUT_SIDE`], flattens transparency onto white and encodes a JPEG.
pub fn process(bytes: &[u8]) -> Result<Processed, MediaError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| MediaError::Invalid(format!("cannot read the image: {e}")))?;
    let format = reader.format().ok_or_else(|| {
        MediaError::Invalid("not an image: the content is not JPEG, PNG, WebP or GIF".to_string())
    })?;
    if !matches!(
        format,
        ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP | ImageFormat::Gif
    ) {
        return Err(MediaError::Invalid(format!(
            "{} images are not accepted; use JPEG, PNG, WebP or GIF",
            format.to_mime_type()
        )));
    }
    // Reading the header under the memory bound alone lets the refusal say the dimensions; the
    // full limits go to the decoder right after, before any pixel is decoded.
    let mut header_limits = Limits::default();
    header_limits.max_alloc = Some(MAX_DECODED_BYTES);
    reader.limits(header_limits);
    let mut decoder = reader.into_decoder().map_err(decode_error)?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(MediaError::Invalid("the image has no pixels".into()));
    }
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(too_large_dimensions(width, height));
    }
    if decoder.total_bytes() > MAX_DECODED_BYTES {
        return Err(MediaError::TooLarge(format!(
            "the image ({width}×{height} pixels) needs {} MB to decode; at most {} MB",
            decoder.total_bytes() / (1024 * 1024),
            MAX_DECODED_BYTES / (1024 * 1024)
        )));
    }
    decoder.set_limits(limits()).map_err(decode_error)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    // Scale down first (cheap, small result), then turn: the rotation works on the small image.
    if image.width().max(image.height()) > MAX_OUTPUT_SIDE {
        image = image.thumbnail(MAX_OUTPUT_SIDE, MAX_OUTPUT_SIDE);
    }
    image.apply_orientation(orientation);
    let rgb = flatten(image);
    let (jpeg, rgb) = encode_within(rgb)?;
    Ok(Processed {
        jpeg,
        width: rgb.width(),
        height: rgb.height(),
        format,
    })
}

fn too_large_dimensions(width: u32, height: u32) -> MediaError {
    MediaError::TooLarge(format!(
        "the image is {width}×{height} pixels; at most {MAX_SIDE} pixels a side are accepted"
    ))
}

fn decode_error(error: ImageError) -> MediaError {
    match error {
        ImageError::Limits(e) => MediaError::TooLarge(format!(
            "the image is over Herald's decoding limits ({MAX_SIDE} pixels a side, {} MB): {e}",
            MAX_DECODED_BYTES / (1024 * 1024)
        )),
        ImageError::Unsupported(e) => MediaError::Invalid(format!(
            "the image uses something Herald cannot decode: {e}"
        )),
        ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            MediaError::Invalid("the image is truncated".into())
        }
        other => MediaError::Invalid(format!("the image is corrupt or truncated: {other}")),
    }
}

/// RGB on white: JPEG has no transparency, and dropping alpha would show whatever colour the
/// transparent pixels happen to hold.
fn flatten(image: DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.into_rgb8();
    }
    let rgba = image.into_rgba8();
    let mut rgb = RgbImage::new(rgba.width(), rgba.height());
    for (out, px) in rgb.pixels_mut().zip(rgba.pixels()) {
        let [r, g, b, a] = px.0;
        let a = u16::from(a);
        let blend = |c: u8| ((u16::from(c) * a + 255 * (255 - a) + 127) / 255) as u8;
        out.0 = [blend(r), blend(g), blend(b)];
    }
    rgb
}

/// Encodes at [`QUALITY`]; while over [`MAX_OUTPUT_BYTES`], lowers the quality (to 50), then
/// scales down by a quarter and tries again. Noise-like images are the only ones that need it.
fn encode_within(mut rgb: RgbImage) -> Result<(Vec<u8>, RgbImage), MediaError> {
    let mut quality = QUALITY;
    for _ in 0..16 {
        let mut jpeg = Vec::new();
        JpegEncoder::new_with_quality(&mut jpeg, quality)
            .encode_image(&rgb)
            .map_err(|e| MediaError::Internal(format!("JPEG encoding failed: {e}")))?;
        if jpeg.len() <= MAX_OUTPUT_BYTES {
            return Ok((jpeg, rgb));
        }
        if quality > 50 {
            quality -= 15;
            continue;
        }
        let (w, h) = (rgb.width(), rgb.height());
        if w.max(h) < 64 {
            break;
        }
        rgb = image::imageops::thumbnail(&rgb, (w * 3 / 4).max(1), (h * 3 / 4).max(1));
    }
    Err(MediaError::TooLarge(format!(
        "the image does not compress to {} MB",
        MAX_OUTPUT_BYTES / (1024 * 1024)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{chunk, png_bomb};
    use image::{ImageEncoder, Rgba, RgbaImage};

    fn png(width: u32, height: u32, pixel: impl FnMut(u32, u32) -> Rgba<u8>) -> Vec<u8> {
        let image = RgbaImage::from_fn(width, height, pixel);
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(
                image.as_raw(),
                width,
                height,
                image::ExtendedColorType::Rgba8,
            )
            .expect("encodes");
        out
    }

    fn decode_jpeg(bytes: &[u8]) -> DynamicImage {
        image::load_from_memory_with_format(bytes, ImageFormat::Jpeg).expect("a JPEG")
    }

    /// A PNG header declaring `width` × `height` pixels of `colour` type, with an empty IDAT.
    fn png_header_only(width: u32, height: u32, colour: u8) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&width.to_be_bytes());
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[8, colour, 0, 0, 0]);
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(
            &mut out,
            b"IDAT",
            &[0x78, 0x01, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        );
        chunk(&mut out, b"IEND", &[]);
        out
    }

    #[test]
    fn a_png_becomes_a_jpeg_of_the_same_size() {
        let source = png(320, 200, |x, y| {
            Rgba([(x % 256) as u8, (y % 256) as u8, 90, 255])
        });
        let out = process(&source).expect("processed");
        assert_eq!(out.format, ImageFormat::Png);
        assert_eq!((out.width, out.height), (320, 200));
        assert_eq!(&out.jpeg[..3], &[0xff, 0xd8, 0xff], "a JPEG");
        let back = decode_jpeg(&out.jpeg);
        assert_eq!((back.width(), back.height()), (320, 200));
    }

    #[test]
    fn large_images_are_scaled_down_keeping_their_shape() {
        let source = png(4000, 1000, |x, _| Rgba([(x % 256) as u8, 10, 200, 255]));
        let out = process(&source).expect("processed");
        assert_eq!((out.width, out.height), (1600, 400));
        let back = decode_jpeg(&out.jpeg);
        assert_eq!((back.width(), back.height()), (1600, 400));
        assert!(out.jpeg.len() <= MAX_OUTPUT_BYTES);
    }

    #[test]
    fn transparency_is_flattened_onto_white() {
        let source = png(16, 16, |_, _| Rgba([0, 0, 0, 0]));
        let out = process(&source).expect("processed");
        let back = decode_jpeg(&out.jpeg).into_rgb8();
        let px = back.get_pixel(8, 8).0;
        assert!(px.iter().all(|&c| c > 245), "white, not black: {px:?}");
    }

    #[test]
    fn noise_is_squeezed_under_the_output_bound() {
        let mut state = 0x1234_5678u32;
        let source = png(1200, 1200, |_, _| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let [a, b, c, _] = state.to_le_bytes();
            Rgba([a, b, c, 255])
        });
        let out = process(&source).expect("processed");
        assert!(
            out.jpeg.len() <= MAX_OUTPUT_BYTES,
            "{} bytes",
            out.jpeg.len()
        );
        assert!(out.width <= 1600 && out.width >= 400);
    }

    #[test]
    fn a_decompression_bomb_is_refused_at_its_header() {
        let bomb = png_bomb(40_000, 40_000);
        assert!(bomb.len() < 2 * 1024 * 1024, "{} bytes", bomb.len());
        match process(&bomb) {
            Err(MediaError::TooLarge(reason)) => {
                assert!(reason.contains("40000×40000"), "{reason}");
                assert!(reason.contains("8192"), "{reason}");
            }
            Err(other) => panic!("wrong refusal: {other:?}"),
            Ok(_) => panic!("a 40,000 × 40,000 image must be refused"),
        }
        // Within the side limit but over the allocation bound: 8192 × 8192 RGBA is 256 MiB.
        let wide = png_header_only(8_192, 8_192, 6);
        assert!(matches!(process(&wide), Err(MediaError::TooLarge(_))));
        // The same bomb at a size Herald takes decodes: the file really is a valid PNG.
        let small = process(&png_bomb(3_000, 2_000)).expect("a valid PNG");
        assert_eq!((small.width, small.height), (1_600, 1_067));
    }

    #[test]
    fn things_that_are_not_images_are_refused() {
        for junk in [
            &b"hello, I am a text file pretending to be image/png"[..],
            b"<html><body>404</body></html>",
            b"%PDF-1.7\n",
            b"",
        ] {
            match process(junk) {
                Err(MediaError::Invalid(reason)) => assert!(reason.contains("not an image")),
                Err(other) => panic!("wrong refusal: {other:?}"),
                Ok(_) => panic!("junk accepted"),
            }
        }
        // A format the image crate knows but Herald does not take.
        let bmp = b"BM\x3a\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0";
        assert!(matches!(process(bmp), Err(MediaError::Invalid(_))));
    }

    #[test]
    fn truncated_and_corrupt_images_are_refused() {
        let source = png(200, 200, |x, y| Rgba([(x * y % 256) as u8, 3, 4, 255]));
        let truncated = &source[..source.len() / 2];
        assert!(
            matches!(process(truncated), Err(MediaError::Invalid(_))),
            "truncated PNG"
        );
        let mut corrupt = source.clone();
        let mid = corrupt.len() / 2;
        for b in &mut corrupt[mid..mid + 64] {
            *b ^= 0x5a;
        }
        assert!(
            matches!(process(&corrupt), Err(MediaError::Invalid(_))),
            "corrupt PNG"
        );
        let jpeg = process(&source).expect("processed").jpeg;
        assert!(
            matches!(process(&jpeg[..20]), Err(MediaError::Invalid(_))),
            "a JPEG cut inside its header"
        );
    }

    #[test]
    fn jpeg_webp_and_gif_are_read_too() {
        let source = png(64, 48, |x, _| Rgba([x as u8 * 4, 0, 0, 255]));
        let jpeg = process(&source).expect("processed").jpeg;
        let again = process(&jpeg).expect("a JPEG input");
        assert_eq!(again.format, ImageFormat::Jpeg);
        assert_eq!((again.width, again.height), (64, 48));

        let rgba = RgbaImage::from_pixel(10, 12, Rgba([0, 128, 255, 255]));
        let mut gif = Vec::new();
        image::codecs::gif::GifEncoder::new(&mut gif)
            .encode(rgba.as_raw(), 10, 12, image::ExtendedColorType::Rgba8)
            .expect("gif");
        assert_eq!(process(&gif).expect("a GIF").format, ImageFormat::Gif);

        let mut webp = Vec::new();
        image::codecs::webp::WebPEncoder::new_lossless(&mut webp)
            .write_image(rgba.as_raw(), 10, 12, image::ExtendedColorType::Rgba8)
            .expect("webp");
        let out = process(&webp).expect("a WebP");
        assert_eq!(
            (out.format, out.width, out.height),
            (ImageFormat::WebP, 10, 12)
        );
    }
}
