//! S3's CRC64NVME, computed here with the implementation the AWS SDK checks uploads with
//! (`aws-smithy-checksums`), so the value `meridian upload` / `meridian manifest` record is
//! the one S3 computes and reports as an object's full-object checksum.

use aws_smithy_checksums::http::HttpChecksum;
use aws_smithy_checksums::ChecksumAlgorithm;
use base64::Engine as _;

/// Bytes of a CRC64NVME value.
const CRC64NVME_BYTES: usize = 8;

/// A running CRC64NVME over bytes fed in order.
pub struct Crc64Nvme(Box<dyn HttpChecksum>);

impl Default for Crc64Nvme {
    fn default() -> Self {
        Self(ChecksumAlgorithm::Crc64Nvme.into_impl())
    }
}

impl Crc64Nvme {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The checksum as S3 writes it (`x-amz-checksum-crc64nvme`): base64 of the 8 bytes,
    /// big-endian.
    pub fn finish(self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0.finalize())
    }
}

/// The CRC64NVME of `bytes`, as S3 writes it.
pub fn crc64nvme(bytes: &[u8]) -> String {
    let mut crc = Crc64Nvme::default();
    crc.update(bytes);
    crc.finish()
}

/// Checks a CRC64NVME value as S3 writes it: base64 of exactly 8 bytes. Returns the problem.
pub fn check_crc64nvme(value: &str) -> Result<(), String> {
    match base64::engine::general_purpose::STANDARD.decode(value) {
        Ok(bytes) if bytes.len() == CRC64NVME_BYTES => Ok(()),
        Ok(bytes) => Err(format!(
            "{value:?} is {} bytes once decoded; a CRC64NVME is 8 (base64, as S3 reports it)",
            bytes.len()
        )),
        Err(_) => Err(format!(
            "{value:?} is not base64; give the CRC64NVME as S3 reports it (base64 of 8 bytes)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_u64(value: &str) -> u64 {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value)
            .expect("base64");
        u64::from_be_bytes(bytes.try_into().expect("8 bytes"))
    }

    #[test]
    fn the_check_value_of_the_crc64_nvme_catalogue() {
        // CRC-64/NVME's check value (the CRC of "123456789") in the CRC catalogue.
        assert_eq!(as_u64(&crc64nvme(b"123456789")), 0xae8b_1486_0a79_9888);
        assert_eq!(crc64nvme(b"123456789").len(), 12);
    }

    #[test]
    fn fed_in_pieces_equals_at_once() {
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut crc = Crc64Nvme::default();
        for chunk in bytes.chunks(4097) {
            crc.update(chunk);
        }
        assert_eq!(crc.finish(), crc64nvme(&bytes));
        assert_ne!(crc64nvme(&bytes), crc64nvme(&bytes[1..]));
    }

    #[test]
    fn values_are_checked() {
        assert_eq!(check_crc64nvme(&crc64nvme(b"x")), Ok(()));
        assert!(check_crc64nvme("AAAA").unwrap_err().contains("3 bytes"));
        assert!(check_crc64nvme("not base64!")
            .unwrap_err()
            .contains("not base64"));
    }
}
