//! Generations: a complete index and vector store built beside the live one,
//! and the one atomic step that makes it live.
//!
//! A generation is built in its own directory, made durable (the files by
//! SQLite's and the vector store's syncs, the directories by explicit
//! fsyncs), and only then named by `CURRENT`, which is replaced by temp file +
//! fsync + rename + directory fsync. A crash at any point leaves `CURRENT`
//! naming a complete generation; a half-built one is removed by the next
//! writable open.

use std::path::Path;
use std::sync::Arc;

use tearline_sim_fs::{Clock, FileKind, Fs, FsExt};

use crate::embed::{Embedder, HashingEmbedder};
use crate::error::{Context, Result};
use crate::index::{Index, IndexAccess};
use crate::layout::{DocName, Generation, Layout};
use crate::lock::WipePermission;
use crate::store::{prepare, source_names};
use crate::vectors::VectorStore;
use crate::vectors::local::{LocalVectorStore, OpenMode};

fn sync_dir(fs: &dyn Fs, dir: &Path) -> Result<()> {
    fs.sync_dir(dir).context(|| format!("syncing {}", dir.display()))
}

/// Builds `generation` from the source files `docs` (any earlier directory
/// of that generation is removed first) and makes it durable. Does not make
/// it live.
pub(crate) fn build(
    fs: &Arc<dyn Fs>,
    clock: &Arc<dyn Clock>,
    layout: &Layout,
    generation: Generation,
    permission: &WipePermission<'_>,
    docs: &[DocName],
) -> Result<()> {
    let dir = layout.generation_dir(generation);
    if fs.exists(&dir).context(|| format!("looking for {}", dir.display()))? {
        permission
            .remove_tree(fs.as_ref(), &dir)
            .context(|| format!("removing the leftover {}", dir.display()))?;
    }
    fs.create_dir_all_durable(&dir)
        .context(|| format!("creating {}", dir.display()))?;
    let embedder = HashingEmbedder::default();
    {
        let mut index = Index::open(
            Arc::clone(fs),
            Arc::clone(clock),
            &layout.index_file(generation),
            IndexAccess::ReadWrite,
        )?;
        index.create_schema()?;
        let (mut vectors, _) = LocalVectorStore::open(
            Arc::clone(fs),
            &layout.vectors_dir(generation),
            embedder.dimension(),
            OpenMode::ReadWrite,
        )
        .context(|| format!("creating the vector store of {}", generation.dir_name()))?;
        for (position, name) in docs.iter().enumerate() {
            let path = layout.source_file(name);
            let content = fs.read_file(&path).context(|| format!("reading {}", path.display()))?;
            let vector_id = position as u64 + 1;
            let (doc, vector) = prepare(
                fs.as_ref(),
                clock.as_ref(),
                layout,
                &embedder,
                name,
                &content,
                vector_id,
            )?;
            vectors
                .upsert(vector_id, &vector)
                .context(|| format!("storing the vector of {name}"))?;
            index.put(&doc)?;
        }
    }
    sync_dir(fs.as_ref(), &dir)?;
    sync_dir(fs.as_ref(), &layout.generations_dir())
}

/// Makes `generation` live: one atomic replacement of `CURRENT`.
pub(crate) fn switch_to(fs: &dyn Fs, layout: &Layout, generation: Generation) -> Result<()> {
    let path = layout.current_file();
    fs.write_file_atomic(&path, format!("{}\n", generation.dir_name()).as_bytes())
        .context(|| format!("writing {}", path.display()))
}

/// Removes every generation directory but `keep` (leftovers of interrupted
/// rebuilds, and replaced generations). Returns their names.
pub(crate) fn remove_others(
    fs: &dyn Fs,
    layout: &Layout,
    keep: Generation,
    permission: &WipePermission<'_>,
) -> Result<Vec<String>> {
    let dir = layout.generations_dir();
    let entries = fs.read_dir(&dir).context(|| format!("listing {}", dir.display()))?;
    let mut removed = Vec::new();
    for entry in entries {
        if entry.name == keep.dir_name() {
            continue;
        }
        let path = dir.join(&entry.name);
        let result = match entry.kind {
            FileKind::Dir => permission.remove_tree(fs, &path),
            FileKind::File => fs.remove_file(&path),
        };
        result.context(|| format!("removing {}", path.display()))?;
        removed.push(entry.name);
    }
    if !removed.is_empty() {
        sync_dir(fs, &dir)?;
    }
    Ok(removed)
}

/// Rebuilds the index from the source files as the generation after
/// `current`, makes it live, and removes the others. Returns it.
pub(crate) fn rebuild(
    fs: &Arc<dyn Fs>,
    clock: &Arc<dyn Clock>,
    layout: &Layout,
    current: Generation,
    permission: &WipePermission<'_>,
) -> Result<Generation> {
    let next = current.next();
    let docs = source_names(fs.as_ref(), layout)?;
    build(fs, clock, layout, next, permission, &docs)?;
    switch_to(fs.as_ref(), layout, next)?;
    remove_others(fs.as_ref(), layout, next, permission)?;
    Ok(next)
}
