//! S3's `x-amz-copy-source` header (`CopyObject`, `UploadPartCopy`): the source's bucket and
//! key, URL-encoded. S3 decodes the header, so a key sent as stored is a different key (or,
//! with bytes outside ASCII, no valid header at all) whenever it holds a space, `+`, `%`,
//! `?` or any non-ASCII character; model paths such as `tokenizer/vocab ü.json` do.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Characters escaped in a copy source's key: everything but the unreserved ones and `/`.
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `bucket/key` as the `x-amz-copy-source` header carries it.
pub fn copy_source(bucket: &str, key: &str) -> String {
    format!("{bucket}/{}", utf8_percent_encode(key, COPY_SOURCE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_url_encoded_but_its_slashes_are_kept() {
        assert_eq!(
            copy_source(
                "models-primary",
                "models/llama/1/weights/shard-1.safetensors"
            ),
            "models-primary/models/llama/1/weights/shard-1.safetensors"
        );
        assert_eq!(
            copy_source("b", "models/m/1/tokenizer/vocab ü+1%?.json"),
            "b/models/m/1/tokenizer/vocab%20%C3%BC%2B1%25%3F.json"
        );
    }

    #[test]
    fn an_encoded_key_decodes_back_to_the_stored_key() {
        let key = "models/m/1/a b/ü/~x_y-z.bin";
        let encoded = copy_source("b", key);
        let decoded = percent_encoding::percent_decode_str(&encoded["b/".len()..])
            .decode_utf8()
            .expect("UTF-8");
        assert_eq!(decoded, key);
    }
}
