//! Redis Cluster key slots: CRC16-XMODEM of the key (or its hash tag)
//! modulo 16384.

use crate::CLUSTER_SLOTS;

/// CRC16-XMODEM (polynomial 0x1021, initial value 0), table-driven.
const CRC16_TABLE: [u16; 256] = build_crc16_table();

const fn build_crc16_table() -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

/// CRC16-XMODEM of `data`, the checksum Redis Cluster uses.
pub fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &byte| {
        let index = usize::from((crc >> 8) as u8 ^ byte);
        let entry = CRC16_TABLE.get(index).copied().unwrap_or(0);
        (crc << 8) ^ entry
    })
}

/// The part of `key` that is hashed: the content of the first `{...}` if
/// it is non-empty, otherwise the whole key (Redis's hash tag rule).
pub fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    let after_open = key.get(open + 1..).unwrap_or_default();
    match after_open.iter().position(|&b| b == b'}') {
        Some(0) | None => key,
        Some(close) => after_open.get(..close).unwrap_or(key),
    }
}

/// The cluster slot (0..16384) of `key`, honouring hash tags.
pub fn crc16_slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) % CLUSTER_SLOTS
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn crc16_check_value() {
        // The standard CRC-16/XMODEM check value, also in Redis's crc16.c.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
    }

    #[test]
    fn known_redis_slots() {
        assert_eq!(crc16_slot(b"foo"), 12182);
        assert_eq!(crc16_slot(b"bar"), 5061);
        assert_eq!(crc16_slot(b"hello"), 866);
        assert_eq!(crc16_slot(b""), 0);
    }

    #[test]
    fn hash_tags() {
        assert_eq!(
            crc16_slot(b"{user1000}.following"),
            crc16_slot(b"{user1000}.followers")
        );
        assert_eq!(crc16_slot(b"{user1000}.following"), crc16_slot(b"user1000"));
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"foo{bar"), b"foo{bar");
        assert_eq!(hash_tag(b"}foo{bar}"), b"bar");
    }
}
