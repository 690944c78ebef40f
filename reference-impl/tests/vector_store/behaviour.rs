//! The `VectorStore` contract with no fault injected, on `SimFs` and on a
//! real directory alike.

use std::io::ErrorKind;

use tearline_refstore::vectors::{OpenMode, VectorError, VectorId, VectorStore};

use crate::{DIM, Env, contents, model_after, on_both, workload};

on_both!(
    writes_are_read_back,
    nearest_orders_by_cosine_then_id,
    bad_input_is_refused_and_changes_nothing,
    data_survives_close_and_reopen,
    rotation_spreads_segments_and_reopens_whole,
    read_only_refuses_writes,
);

fn writes_are_read_back(env: &Env) {
    let (mut store, report) = env.open(OpenMode::ReadWrite).expect("open");
    assert_eq!((report.segments, report.live_vectors), (0, 0));
    assert_eq!(store.dimension(), DIM);
    assert_eq!(store.get(1).expect("get"), None);
    store.upsert(3, &[1.0, 2.0, 3.0, 4.0]).expect("upsert 3");
    store.upsert(1, &[0.5, 0.0, 0.0, 0.0]).expect("upsert 1");
    assert_eq!(store.get(3).expect("get"), Some(vec![1.0, 2.0, 3.0, 4.0]));
    store.upsert(3, &[-1.0, 0.0, 0.0, 0.0]).expect("replace 3");
    assert_eq!(store.get(3).expect("get"), Some(vec![-1.0, 0.0, 0.0, 0.0]));
    assert_eq!(store.ids().expect("ids"), vec![1, 3]);
    store.delete(1).expect("delete 1");
    store.delete(99).expect("deleting an absent id is fine");
    assert_eq!(store.get(1).expect("get"), None);
    assert_eq!(store.ids().expect("ids"), vec![3]);
    store
        .upsert(u64::MAX, &[0.0; DIM])
        .expect("the largest id, a zero vector");
    assert_eq!(store.ids().expect("ids"), vec![3, u64::MAX]);
}

fn nearest_orders_by_cosine_then_id(env: &Env) {
    let (mut store, _) = env.open(OpenMode::ReadWrite).expect("open");
    assert!(store.nearest(&[1.0, 0.0, 0.0, 0.0], 3).expect("empty").is_empty());
    let vectors: [(VectorId, [f32; DIM]); 6] = [
        (7, [1.0, 0.0, 0.0, 0.0]),  // 1
        (2, [2.0, 0.0, 0.0, 0.0]),  // 1, ties with 7, lower id first
        (5, [1.0, 1.0, 0.0, 0.0]),  // 0.707
        (4, [0.0, 0.0, 0.0, 0.0]),  // zero vector: 0
        (3, [0.0, 3.0, 0.0, 0.0]),  // orthogonal: 0, ties with 4
        (9, [-1.0, 0.0, 0.0, 0.0]), // -1
    ];
    for (id, v) in &vectors {
        store.upsert(*id, v).expect("upsert");
    }
    let found = store.nearest(&[5.0, 0.0, 0.0, 0.0], 10).expect("nearest");
    let ids: Vec<VectorId> = found.iter().map(|n| n.id).collect();
    assert_eq!(ids, vec![2, 7, 5, 3, 4, 9]);
    let scores: Vec<f32> = found.iter().map(|n| n.score).collect();
    assert_eq!(scores[..2], [1.0, 1.0]);
    assert!((scores[2] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6, "{scores:?}");
    assert_eq!(scores[3..], [0.0, 0.0, -1.0]);
    let top: Vec<VectorId> = store
        .nearest(&[5.0, 0.0, 0.0, 0.0], 3)
        .expect("top 3")
        .iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(top, vec![2, 7, 5], "k cuts the same order");
    assert!(store.nearest(&[1.0, 0.0, 0.0, 0.0], 0).expect("k = 0").is_empty());
    let zero_query = store.nearest(&[0.0; DIM], 10).expect("zero query");
    assert!(zero_query.iter().all(|n| n.score == 0.0));
    let ids: Vec<VectorId> = zero_query.iter().map(|n| n.id).collect();
    assert_eq!(ids, vec![2, 3, 4, 5, 7, 9], "a zero query ties everything: by id");
}

fn bad_input_is_refused_and_changes_nothing(env: &Env) {
    let (mut store, _) = env.open(OpenMode::ReadWrite).expect("open");
    store.upsert(1, &[1.0; DIM]).expect("upsert");
    let files = env.files();
    for bad in [
        vec![1.0; DIM - 1],
        vec![1.0; DIM + 1],
        vec![],
        vec![f32::NAN, 0.0, 0.0, 0.0],
        vec![0.0, f32::INFINITY, 0.0, 0.0],
        vec![0.0, 0.0, 0.0, f32::NEG_INFINITY],
    ] {
        let upsert = store.upsert(1, &bad);
        assert!(matches!(upsert, Err(VectorError::Invalid(_))), "{bad:?}: {upsert:?}");
        let upsert = store.upsert(2, &bad);
        assert!(matches!(upsert, Err(VectorError::Invalid(_))), "{bad:?}: {upsert:?}");
        let query = store.nearest(&bad, 1);
        assert!(matches!(query, Err(VectorError::Invalid(_))), "{bad:?}: {query:?}");
    }
    assert_eq!(store.ids().expect("ids"), vec![1]);
    assert_eq!(store.get(1).expect("get"), Some(vec![1.0; DIM]));
    assert_eq!(env.files(), files, "a refused write reached the disk");
    drop(store);
    for dimension in [0, tearline_refstore::vectors::MAX_DIMENSION + 1] {
        let opened = tearline_refstore::vectors::LocalVectorStore::open(
            std::sync::Arc::clone(&env.fs),
            &env.dir,
            dimension,
            OpenMode::ReadWrite,
        );
        assert!(matches!(opened, Err(VectorError::Invalid(_))), "dimension {dimension}");
    }
    let zero_segments = tearline_refstore::vectors::LocalVectorStore::open_with(
        std::sync::Arc::clone(&env.fs),
        &env.dir,
        DIM,
        OpenMode::ReadWrite,
        tearline_refstore::vectors::LocalOptions {
            segment_target_bytes: 0,
            ..Default::default()
        },
    );
    assert!(matches!(zero_segments, Err(VectorError::Invalid(_))));
}

fn data_survives_close_and_reopen(env: &Env) {
    let ops = workload(11, 40);
    {
        let (mut store, _) = env.open(OpenMode::ReadWrite).expect("open");
        for op in &ops {
            op.apply(&mut store).expect("write");
        }
    }
    let expected = model_after(&ops, ops.len());
    let (store, report) = env.open(OpenMode::ReadWrite).expect("reopen");
    assert_eq!(contents(&store), expected);
    assert_eq!(report.live_vectors, expected.len());
    assert_eq!(report.segments, 1);
    assert!(!report.repaired(), "{report:?}");
    let writes = ops
        .iter()
        .enumerate()
        .filter(|(i, op)| match op {
            crate::Op::Upsert(..) => true,
            crate::Op::Delete(id) => model_after(&ops, *i).contains_key(id),
        })
        .count();
    assert_eq!(report.records_read, writes as u64, "one record per effective write");
    let (read_only, ro_report) = env.open(OpenMode::ReadOnly).expect("read-only");
    assert_eq!(contents(&read_only), expected);
    assert_eq!(ro_report, report);
}

fn rotation_spreads_segments_and_reopens_whole(env: &Env) {
    let ops = workload(12, 60);
    let mut written = 0u64;
    {
        let (mut store, _) = env.open_small(OpenMode::ReadWrite).expect("open");
        for (i, op) in ops.iter().enumerate() {
            // Deletes of absent ids write nothing; count what reaches the disk.
            let present = matches!(op, crate::Op::Delete(id) if model_after(&ops, i).contains_key(id));
            written += u64::from(matches!(op, crate::Op::Upsert(..)) || present);
            op.apply(&mut store).expect("write");
        }
    }
    let files = env.files();
    let segments: Vec<&String> = files.keys().filter(|n| n.ends_with(".vec")).collect();
    assert!(segments.len() >= 5, "expected rotation: {segments:?}");
    for (i, name) in segments.iter().enumerate() {
        assert_eq!(**name, format!("seg-{:06}.vec", i + 1));
        let len = files[*name].len() as u64;
        assert!(
            len <= crate::small_segments().segment_target_bytes + crate::UPSERT,
            "{name} overshoots by more than one record: {len}"
        );
    }
    let (mut store, report) = env.open_small(OpenMode::ReadWrite).expect("reopen");
    assert_eq!(report.segments, segments.len());
    assert_eq!(report.records_read, written);
    assert_eq!(contents(&store), model_after(&ops, ops.len()));
    // The sealed segments stay as they are; new writes go on from the last.
    let sealed: Vec<Vec<u8>> = segments[..segments.len() - 1]
        .iter()
        .map(|n| files[*n].clone())
        .collect();
    for id in 100..110 {
        store.upsert(id, &[id as f32, 1.0, 0.0, 0.0]).expect("upsert");
    }
    drop(store);
    let after = env.files();
    for (name, bytes) in segments.iter().zip(&sealed) {
        assert_eq!(&after[*name], bytes, "sealed segment {name} was written again");
    }
    let (store, _) = env.open_small(OpenMode::ReadOnly).expect("reopen");
    let mut expected = model_after(&ops, ops.len());
    for id in 100..110 {
        expected.insert(id, vec![id as f32, 1.0, 0.0, 0.0]);
    }
    assert_eq!(contents(&store), expected);
}

fn read_only_refuses_writes(env: &Env) {
    let missing = env.open(OpenMode::ReadOnly).expect_err("read-only does not create");
    assert!(
        matches!(&missing, VectorError::Io(e) if e.kind() == ErrorKind::NotFound),
        "{missing:?}"
    );
    assert!(!tearline_sim_fs::FsExt::exists(&*env.fs, &env.dir).expect("exists"));
    let (mut store, _) = env.open(OpenMode::ReadWrite).expect("open");
    store.upsert(1, &[1.0; DIM]).expect("upsert");
    drop(store);
    let files = env.files();
    let (mut store, _) = env.open(OpenMode::ReadOnly).expect("read-only");
    for result in [store.upsert(2, &[1.0; DIM]), store.delete(1), store.delete(2)] {
        assert!(
            matches!(&result, Err(VectorError::Io(e)) if e.kind() == ErrorKind::ReadOnlyFilesystem),
            "{result:?}"
        );
    }
    assert_eq!(store.ids().expect("ids"), vec![1]);
    assert_eq!(env.files(), files);
}
