//! Repair on open: a torn tail or torn header is a counted repair, any other
//! damage is `Corrupt` naming the file and offset and touches nothing; never
//! a panic. Each body runs on `SimFs` and on a real directory.

use std::path::Path;

use tearline_refstore::vectors::{OpenMode, OpenReport, VectorError, VectorStore};
use tearline_sim_fs::FsExt;

use crate::{DELETE, DIM, Env, HEADER, Op, UPSERT, contents, model_after, on_both};

on_both!(
    a_cut_at_every_byte_keeps_exactly_the_whole_records,
    a_damaged_final_record_is_dropped,
    trailing_zeros_are_dropped_without_counting_a_record,
    a_damaged_record_followed_by_others_is_corrupt_and_untouched,
    damage_in_a_sealed_segment_is_corrupt,
    an_empty_last_segment_gets_its_header_back,
    an_empty_only_segment_gets_its_header_back,
    a_foreign_file_is_never_taken_for_a_segment,
    files_that_are_not_segments_are_ignored,
    read_only_reports_the_repair_and_writes_nothing,
);

/// Upsert 1, upsert 2, delete 1, upsert 3: records of `UPSERT`, `UPSERT`,
/// `DELETE`, `UPSERT` bytes after the header. Returns the ops and the record
/// boundaries (the header's end first).
fn four_records(env: &Env) -> (Vec<Op>, Vec<u64>) {
    let ops = vec![
        Op::Upsert(1, vec![1.0, 0.0, 0.0, 0.0]),
        Op::Upsert(2, vec![0.0, 1.0, 0.0, 0.0]),
        Op::Delete(1),
        Op::Upsert(3, vec![0.0, 0.0, 1.0, 2.0]),
    ];
    let (mut store, _) = env.open(OpenMode::ReadWrite).expect("open");
    for op in &ops {
        op.apply(&mut store).expect("write");
    }
    let mut ends = vec![HEADER];
    for size in [UPSERT, UPSERT, DELETE, UPSERT] {
        ends.push(ends.last().copied().unwrap_or_default() + size);
    }
    assert_eq!(env.read(&env.segment(1)).len() as u64, ends[4]);
    (ops, ends)
}

fn expect_corrupt(result: Result<impl std::fmt::Debug, VectorError>, file: &Path, at: u64) -> String {
    match result {
        Err(VectorError::Corrupt {
            file: f,
            offset,
            reason,
        }) => {
            assert_eq!((f.as_path(), offset), (file, at), "{reason}");
            reason
        }
        other => panic!("expected Corrupt at {} byte {at}, got {other:?}", file.display()),
    }
}

fn a_cut_at_every_byte_keeps_exactly_the_whole_records(env: &Env) {
    let (ops, ends) = four_records(env);
    let seg = env.segment(1);
    let full = env.read(&seg);
    for cut in 0..=full.len() as u64 {
        env.write(&seg, &full[..cut as usize]);
        let whole = ends.iter().skip(1).filter(|&&end| end <= cut).count();
        let kept_len = if cut < HEADER { HEADER } else { ends[whole] };
        let (store, report) = env.open(OpenMode::ReadWrite).expect("a cut is a repair, not an error");
        assert_eq!(contents(&store), model_after(&ops, whole), "cut at {cut}");
        assert_eq!(report.records_read, whole as u64, "cut at {cut}");
        if cut == kept_len {
            assert!(!report.repaired(), "cut at {cut} is a record boundary: {report:?}");
        } else {
            assert_eq!(report.truncated, vec![seg.clone()], "cut at {cut}");
            let dropped = if cut < HEADER { cut } else { cut - kept_len };
            assert_eq!(report.dropped_bytes, dropped, "cut at {cut}");
            assert_eq!(report.dropped_records, u64::from(cut > HEADER), "cut at {cut}");
        }
        drop(store);
        let repaired = env.read(&seg);
        assert_eq!(repaired.len() as u64, kept_len, "cut at {cut}: the tail is cut on disk");
        assert_eq!(repaired[..], full[..kept_len as usize], "cut at {cut}");
        let (mut store, report) = env.open(OpenMode::ReadWrite).expect("reopen");
        assert!(!report.repaired(), "cut at {cut}: the repair did not stick: {report:?}");
        store.upsert(9, &[9.0; DIM]).expect("the repaired store takes writes");
        drop(store);
        let (store, _) = env.open(OpenMode::ReadOnly).expect("reopen");
        let mut expected = model_after(&ops, whole);
        expected.insert(9, vec![9.0; DIM]);
        assert_eq!(contents(&store), expected, "cut at {cut}");
    }
}

fn a_damaged_final_record_is_dropped(env: &Env) {
    let (ops, ends) = four_records(env);
    let seg = env.segment(1);
    let full = env.read(&seg);
    for at in ends[3]..ends[4] {
        let mut damaged = full.clone();
        damaged[at as usize] ^= 0x10;
        env.write(&seg, &damaged);
        let (store, report) = env
            .open(OpenMode::ReadWrite)
            .expect("a bad final record is a torn tail");
        assert_eq!(contents(&store), model_after(&ops, 3), "byte {at}");
        assert_eq!((report.dropped_records, report.dropped_bytes), (1, UPSERT), "byte {at}");
        assert_eq!(env.read(&seg)[..], full[..ends[3] as usize]);
    }
}

fn trailing_zeros_are_dropped_without_counting_a_record(env: &Env) {
    let (ops, ends) = four_records(env);
    let seg = env.segment(1);
    let mut padded = env.read(&seg);
    padded.extend_from_slice(&[0u8; 700]);
    env.write(&seg, &padded);
    let (store, report) = env.open(OpenMode::ReadWrite).expect("open");
    assert_eq!(contents(&store), model_after(&ops, 4));
    assert_eq!((report.dropped_records, report.dropped_bytes), (0, 700));
    assert_eq!(env.read(&seg).len() as u64, ends[4]);
}

fn a_damaged_record_followed_by_others_is_corrupt_and_untouched(env: &Env) {
    let (_, ends) = four_records(env);
    let seg = env.segment(1);
    let full = env.read(&seg);
    for record in 0..3 {
        for at in ends[record]..ends[record + 1] {
            let mut damaged = full.clone();
            damaged[at as usize] ^= 0x01;
            env.write(&seg, &damaged);
            let before = env.files();
            for mode in [OpenMode::ReadWrite, OpenMode::ReadOnly] {
                let reason = expect_corrupt(env.open(mode), &seg, ends[record]);
                assert!(reason.contains("followed by a valid record"), "{reason}");
                assert_eq!(env.files(), before, "{mode:?} changed a corrupt store (byte {at})");
            }
        }
    }
}

fn damage_in_a_sealed_segment_is_corrupt(env: &Env) {
    let (mut store, _) = env.open_small(OpenMode::ReadWrite).expect("open");
    for id in 0..10 {
        store.upsert(id, &[id as f32, 1.0, 2.0, 3.0]).expect("upsert");
    }
    drop(store);
    let (first, second) = (env.segment(1), env.segment(2));
    let (sealed, next) = (env.read(&first), env.read(&second));
    assert_eq!(
        sealed.len() as u64,
        HEADER + 4 * UPSERT,
        "four upserts fill a small segment"
    );
    let cases: Vec<(&Path, Vec<u8>, u64)> = vec![
        (&first, sealed[..sealed.len() - 1].to_vec(), HEADER + 3 * UPSERT),
        (&first, [&sealed[..], &[0u8; 3]].concat(), HEADER + 4 * UPSERT),
        (&first, Vec::new(), 0),
        (&second, [&b"X"[..], &next[1..]].concat(), 0),
    ];
    for (path, bytes, at) in cases {
        env.write(path, &bytes);
        let before = env.files();
        for mode in [OpenMode::ReadWrite, OpenMode::ReadOnly] {
            expect_corrupt(env.open_small(mode), path, at);
            assert_eq!(env.files(), before, "{mode:?}");
        }
        env.write(&first, &sealed);
        env.write(&second, &next);
    }
    let wrong = tearline_refstore::vectors::LocalVectorStore::open(
        std::sync::Arc::clone(&env.fs),
        &env.dir,
        DIM + 1,
        OpenMode::ReadWrite,
    );
    let reason = expect_corrupt(wrong, &first, 0);
    assert!(reason.contains("4-dimensional"), "{reason}");
    env.open_small(OpenMode::ReadWrite).expect("the restored store opens");
}

fn an_empty_last_segment_gets_its_header_back(env: &Env) {
    let (ops, _) = four_records(env);
    let (first, second) = (env.segment(1), env.segment(2));
    let sealed = env.read(&first);
    env.write(&second, b"");
    let (mut store, report) = env.open(OpenMode::ReadWrite).expect("open");
    assert_eq!(report.segments, 2);
    assert_eq!(report.truncated, vec![second.clone()]);
    assert_eq!((report.dropped_records, report.dropped_bytes), (0, 0));
    assert_eq!(contents(&store), model_after(&ops, 4));
    assert_eq!(env.read(&second), sealed[..HEADER as usize], "a fresh header");
    store.upsert(5, &[5.0; DIM]).expect("upsert");
    drop(store);
    assert_eq!(env.read(&first), sealed, "the sealed segment is not written again");
    assert_eq!(env.read(&second).len() as u64, HEADER + UPSERT);
    let (store, report) = env.open(OpenMode::ReadWrite).expect("reopen");
    assert!(!report.repaired());
    assert_eq!(store.get(5).expect("get"), Some(vec![5.0; DIM]));
}

fn an_empty_only_segment_gets_its_header_back(env: &Env) {
    env.fs.create_dir_all(&env.dir).expect("mkdir");
    let seg = env.segment(1);
    for torn in [&[][..], &[0u8; 20][..], &[0u8; 7][..], &b"TLVEC"[..]] {
        env.write(&seg, torn);
        let (mut store, report) = env.open(OpenMode::ReadWrite).expect("open");
        assert_eq!(report.truncated, vec![seg.clone()], "{torn:?}");
        assert_eq!(report.dropped_bytes, torn.len() as u64);
        store.upsert(1, &[1.0; DIM]).expect("upsert");
        assert_eq!(env.read(&seg).len() as u64, HEADER + UPSERT);
    }
}

fn a_foreign_file_is_never_taken_for_a_segment(env: &Env) {
    four_records(env);
    for (name, bytes) in [
        ("seg-000007.vec", &b"these are not the vectors you are looking for"[..]),
        ("seg-000007.vec", &b"hello"[..]),
        ("seg-000007.vec", &[0xFFu8; 20][..]),
    ] {
        let foreign = env.dir.join(name);
        env.write(&foreign, bytes);
        let before = env.files();
        let reason = expect_corrupt(env.open(OpenMode::ReadWrite), &foreign, 0);
        assert!(reason.contains("magic"), "{reason}");
        assert_eq!(env.files(), before);
    }
}

fn files_that_are_not_segments_are_ignored(env: &Env) {
    let (ops, _) = four_records(env);
    let names = ["notes.txt", "seg-000001.vec.tmp", "seg-x.vec"];
    for name in names {
        env.write(&env.dir.join(name), b"someone else's");
    }
    env.fs.create_dir(&env.dir.join("seg-000009.vec")).expect("a directory");
    let (mut store, report) = env.open(OpenMode::ReadWrite).expect("open");
    let mut ignored: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    ignored.push("seg-000009.vec".into());
    ignored.sort();
    let reported: Vec<String> = report
        .ignored
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    assert_eq!(reported, ignored);
    assert_eq!(contents(&store), model_after(&ops, 4));
    store.upsert(8, &[8.0; DIM]).expect("upsert");
    for name in names {
        assert_eq!(env.read(&env.dir.join(name)), b"someone else's");
    }
}

fn read_only_reports_the_repair_and_writes_nothing(env: &Env) {
    let (ops, ends) = four_records(env);
    let seg = env.segment(1);
    let mut torn = env.read(&seg);
    torn.truncate(ends[4] as usize - 5);
    env.write(&seg, &torn);
    // A torn tail, then (once that is repaired) an empty last segment.
    for damage in ["torn tail", "empty segment"] {
        let before = env.files();
        let (mut read_only, ro_report): (_, OpenReport) = env.open(OpenMode::ReadOnly).expect("read-only");
        assert!(ro_report.repaired(), "{damage}: {ro_report:?}");
        assert!(read_only.upsert(1, &[1.0; DIM]).is_err());
        assert_eq!(env.files(), before, "{damage}: read-only wrote");
        let (read_write, rw_report) = env.open(OpenMode::ReadWrite).expect("read-write");
        assert_eq!(rw_report, ro_report, "{damage}: the two modes report the same repair");
        assert_eq!(contents(&read_only), contents(&read_write), "{damage}");
        assert_eq!(contents(&read_write), model_after(&ops, 3), "{damage}");
        assert_ne!(env.files(), before, "{damage}: read-write repairs");
        drop(read_write);
        env.write(&env.segment(2), b"");
    }
}
