//! Page checksums: what SQLite's `cksumvfs` extension does, with the page
//! number mixed in, so a page that rots, or one written to the wrong place,
//! reads as an error instead of as data.
//!
//! A database opts in by reserving [`CHECKSUM_BYTES`] at the end of every
//! page (byte 20 of its header; [`super::reserve_page_checksum_bytes`] sets
//! it before the first table is created). On such a database, with
//! [`super::VfsOptions::page_checksums`] on, every whole-page write of the
//! main database file gets the checksum of its page number and the rest of
//! the page in those bytes, and every whole-page read is checked against
//! them: a mismatch is `SQLITE_IOERR_DATA` (SQLite reports "disk I/O
//! error"; `PRAGMA integrity_check` reads every page, so it fails on any
//! damaged page). Rollback journals and WAL frames carry copies of pages
//! with their checksums, which are checked again when read back into the
//! database. A database without the reserve is served unchecked.

use std::cell::Cell;

/// Bytes reserved at the end of each page for its checksum.
pub(crate) const CHECKSUM_BYTES: usize = 8;

/// The header's magic string; byte 20 after it holds the reserve.
const MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Where a main database file stands with checksums.
#[derive(Debug, Default)]
pub(crate) struct PageChecksums {
    /// Whether the database reserves room for checksums (read off its
    /// header, as read or written).
    active: Cell<bool>,
}

impl PageChecksums {
    /// Learns from a read or write at `offset` whether the database
    /// reserves checksum bytes (only a header says so).
    fn learn(&self, buf: &[u8], offset: u64) {
        if offset == 0 && buf.len() > 20 && buf.starts_with(MAGIC) {
            self.active.set(usize::from(buf[20]) == CHECKSUM_BYTES);
        }
    }

    /// Checks a page just read; `false` if it is damaged.
    pub(crate) fn verify(&self, buf: &[u8], offset: u64) -> bool {
        self.learn(buf, offset);
        let Some(pgno) = self.page_number(buf, offset) else {
            return true;
        };
        let (body, stored) = buf.split_at(buf.len() - CHECKSUM_BYTES);
        // Only whole pages read from inside the file get here (past its end
        // the read is short, and SQLite expects zeros): a page of zeros
        // inside it is damage too (a region a power cut left as zeros).
        stored == checksum(body, pgno)
    }

    /// The page to write, with its checksum in place (`None`: as it is).
    pub(crate) fn seal(&self, buf: &[u8], offset: u64) -> Option<Vec<u8>> {
        self.learn(buf, offset);
        let pgno = self.page_number(buf, offset)?;
        let mut page = buf.to_vec();
        let at = page.len() - CHECKSUM_BYTES;
        let sum = checksum(&page[..at], pgno);
        page[at..].copy_from_slice(&sum);
        Some(page)
    }

    /// The 1-based page number of a whole-page access, if checksums apply.
    fn page_number(&self, buf: &[u8], offset: u64) -> Option<u64> {
        let len = buf.len();
        let whole_page = (512..=65536).contains(&len) && len.is_power_of_two() && offset.is_multiple_of(len as u64);
        (self.active.get() && whole_page).then(|| offset / len as u64 + 1)
    }
}

/// A 64-bit checksum of the page number and the page body, eight bytes at a
/// time. Each step (xor a word, multiply by an odd constant, rotate) is a
/// bijection of the running value, so a change to any one word always
/// changes the sum, and the page number seeds it, so a page at another
/// place does not verify.
fn checksum(body: &[u8], pgno: u64) -> [u8; CHECKSUM_BYTES] {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut sum = pgno.wrapping_mul(K) ^ 0xcbf2_9ce4_8422_2325;
    let mut words = body.chunks_exact(8);
    for chunk in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        sum = (sum ^ u64::from_le_bytes(word)).wrapping_mul(K).rotate_left(29);
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    sum = (sum ^ u64::from_le_bytes(tail) ^ body.len() as u64).wrapping_mul(K);
    (sum ^ (sum >> 31)).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_page(reserve: u8) -> Vec<u8> {
        let mut page = vec![7u8; 4096];
        page[..16].copy_from_slice(MAGIC);
        page[20] = reserve;
        page
    }

    #[test]
    fn a_sealed_page_verifies_and_a_flipped_or_moved_one_does_not() {
        let sums = PageChecksums::default();
        let sealed = sums.seal(&header_page(8), 0).expect("a header that reserves 8 bytes");
        assert!(sums.verify(&sealed, 0));
        let page = sums.seal(&[3u8; 4096], 4096).expect("page 2");
        assert!(sums.verify(&page, 4096));
        let mut flipped = page.clone();
        flipped[100] ^= 0x10;
        assert!(!sums.verify(&flipped, 4096), "a flipped bit");
        assert!(!sums.verify(&page, 8192), "page 2 read where page 3 belongs");
        assert!(!sums.verify(&[0u8; 4096], 8192), "a page of zeros");
        assert!(sums.verify(&flipped[..100], 4096), "a partial read is not checked");
    }

    #[test]
    fn every_single_bit_flip_of_a_page_is_caught() {
        let body: Vec<u8> = (0..4088u32).map(|i| (i * 7 % 251) as u8).collect();
        let sum = checksum(&body, 5);
        let mut copy = body.clone();
        for bit in 0..body.len() * 8 {
            copy[bit / 8] ^= 1 << (bit % 8);
            assert_ne!(checksum(&copy, 5), sum, "bit {bit}");
            copy[bit / 8] ^= 1 << (bit % 8);
        }
        assert_ne!(checksum(&body, 6), sum, "another page number");
    }

    #[test]
    fn a_database_without_the_reserve_is_not_checked() {
        let sums = PageChecksums::default();
        assert_eq!(sums.seal(&header_page(0), 0), None);
        assert_eq!(sums.seal(&[3u8; 4096], 4096), None);
        assert!(sums.verify(&[3u8; 4096], 4096));
    }
}
