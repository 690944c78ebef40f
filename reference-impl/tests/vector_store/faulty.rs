//! `FaultyVectorStore`: each mode does what it says, switched through a
//! cloned `FaultSwitch` while the wrapper is owned elsewhere.

use tearline_refstore::vectors::{FaultMode, FaultSwitch, FaultyVectorStore, OpenMode, VectorError, VectorStore};

use crate::{DIM, Env, contents};

/// A faulty store over a local one on `SimFs`, owned as the reference store
/// would own it, and the switch a test keeps.
fn faulty(env: &Env) -> (Box<dyn VectorStore>, FaultSwitch) {
    let (local, _) = env.open(OpenMode::ReadWrite).expect("open");
    let switch = FaultSwitch::new();
    let store: Box<dyn VectorStore> = Box::new(FaultyVectorStore::new(Box::new(local), switch.clone()));
    (store, switch)
}

const V: [f32; DIM] = [1.0, 2.0, 3.0, 4.0];

#[test]
fn healthy_forwards_everything() {
    let env = Env::sim();
    let (mut store, switch) = faulty(&env);
    assert_eq!(switch.mode(), FaultMode::Healthy);
    assert_eq!(store.dimension(), DIM);
    store.upsert(1, &V).expect("upsert");
    store.upsert(2, &[-1.0, 0.0, 0.0, 0.0]).expect("upsert");
    assert_eq!(store.get(1).expect("get"), Some(V.to_vec()));
    assert_eq!(store.ids().expect("ids"), vec![1, 2]);
    assert_eq!(store.nearest(&V, 1).expect("nearest")[0].id, 1);
    store.delete(2).expect("delete");
    assert_eq!(store.ids().expect("ids"), vec![1]);
    assert!(matches!(store.upsert(3, &[1.0]), Err(VectorError::Invalid(_))));
}

#[test]
fn refusing_modes_apply_nothing() {
    let env = Env::sim();
    let (mut store, switch) = faulty(&env);
    store.upsert(1, &V).expect("upsert");
    for mode in [
        FaultMode::Unavailable,
        FaultMode::IoError,
        FaultMode::TimeoutBeforeApply,
    ] {
        switch.set(mode);
        let failures = [
            store.upsert(2, &V).expect_err("upsert"),
            store.delete(1).expect_err("delete"),
            store.get(1).expect_err("get"),
            store.ids().expect_err("ids"),
            store.nearest(&V, 1).expect_err("nearest"),
        ];
        for error in &failures {
            let right = match mode {
                FaultMode::Unavailable => matches!(error, VectorError::Unavailable(_)),
                FaultMode::IoError => {
                    matches!(error, VectorError::Io(e) if e.raw_os_error() == tearline_sim_fs::errno::eio().raw_os_error())
                }
                _ => matches!(error, VectorError::Timeout),
            };
            assert!(right, "{mode:?}: {error:?}");
        }
        assert_eq!(store.dimension(), DIM, "{mode:?}: the dimension is configuration");
        switch.set(FaultMode::Healthy);
        assert_eq!(store.ids().expect("ids"), vec![1], "{mode:?} applied a write");
        assert_eq!(
            store.get(1).expect("get"),
            Some(V.to_vec()),
            "{mode:?} applied a delete"
        );
    }
    drop(store);
    let (local, _) = env.open(OpenMode::ReadOnly).expect("reopen");
    assert_eq!(local.ids().expect("ids"), vec![1], "a refused write reached the disk");
}

#[test]
fn a_timeout_after_apply_has_applied_the_write_durably() {
    let env = Env::sim();
    let (mut store, switch) = faulty(&env);
    switch.set(FaultMode::TimeoutAfterApply);
    assert!(matches!(store.upsert(1, &V), Err(VectorError::Timeout)));
    assert!(matches!(store.upsert(2, &V), Err(VectorError::Timeout)));
    assert!(matches!(store.get(1), Err(VectorError::Timeout)), "reads time out too");
    assert!(matches!(store.delete(2), Err(VectorError::Timeout)));
    assert!(
        matches!(store.upsert(3, &[f32::NAN; DIM]), Err(VectorError::Invalid(_))),
        "the inner store's own refusal wins over the timeout"
    );
    switch.set(FaultMode::Healthy);
    assert_eq!(
        store.get(1).expect("get"),
        Some(V.to_vec()),
        "the timed-out upsert was applied"
    );
    assert_eq!(store.get(2).expect("get"), None, "the timed-out delete was applied");
    drop(store);
    let (local, _) = env.open(OpenMode::ReadOnly).expect("reopen");
    assert_eq!(
        contents(&local).keys().copied().collect::<Vec<_>>(),
        vec![1],
        "and is durable"
    );
}

#[test]
fn the_switch_is_shared_and_into_inner_removes_the_faults() {
    let env = Env::sim();
    let (local, _) = env.open(OpenMode::ReadWrite).expect("open");
    let wrapper = FaultyVectorStore::new(Box::new(local), FaultSwitch::new());
    let kept = wrapper.switch().clone();
    kept.set(FaultMode::Unavailable);
    assert_eq!(wrapper.switch().mode(), FaultMode::Unavailable);
    assert!(wrapper.ids().is_err());
    let mut inner = wrapper.into_inner();
    inner.upsert(1, &V).expect("no faults left");
}
