"""Settling one journaled intent of a writer that died: the file side of crash recovery.

The registry side (which intents were committed, which paths a dataset or a live writer holds)
is decided by :mod:`skybutler.recovery`; here the files are put right, and only files this
intent proves to be its own are touched: its staged name (unique to the batch), and at the
final path a file recognised by the journal -- the very inode of a moved or linked user's file,
a symlink to the recorded source (absolute, or relative to the link), or the recorded checksum of a copy or a put.  Anything else
at the final path is left for ``verify`` (which quarantines it, never deletes it).
"""

from __future__ import annotations

import os
import shutil

from .checksums import verify
from .journal import Intent
from .local_files import rename_no_replace, unlink_if_present


def settle_intent(datastore, intent: Intent, committed: bool, claimed: bool) -> list[str]:
    """Put the files of one intent right; returns what was done, one line per action.

    ``committed``: the registry holds the dataset at this path (the write succeeded: only a
    staged leftover goes, and a copy-then-delete move is finished; a removal did not happen).  ``claimed``: another
    dataset or a live writer holds the path (only the staged leftover goes).  Otherwise the
    write never happened for the registry (or a removal did), and its file is taken out: a moved
    or linked user's file whose source is gone is moved back to where it came from, anything
    else of ours (recognised by its recorded checksum) is deleted.
    """
    done = []
    if intent.staged and unlink_if_present(intent.staged):
        done.append(f"removed staging file {intent.staged}")
    if committed:
        if intent.kind == "move" and _finish_move(datastore, intent):
            done.append(f"finished the move of {intent.source} (its copy is registered)")
        return done
    if claimed:
        return done
    final = datastore.full_path(intent.path)
    if not _is_ours(datastore, intent, final):
        return done
    source = intent.source
    if intent.kind in ("move", "hardlink") and source and not os.path.lexists(source):
        _put_back(datastore, final, source)
        done.append(f"moved {final} back to {source}")
    else:
        if datastore.local:
            os.unlink(final)
            datastore.prune_empty_dirs([os.path.dirname(final)])
        else:
            datastore.fs.rm_file(final)
        why = "its dataset's removal was interrupted" if intent.kind == "remove" else \
            f"written by an interrupted {intent.kind}"
        done.append(f"removed {final} ({why}; dataset {intent.dataset_id})")
    return done


def _is_ours(datastore, intent: Intent, final: str) -> bool:
    """Whether the file at ``final`` is the one this intent placed."""
    if not datastore.local:
        if intent.checksum is None:
            return False
        try:
            return verify(datastore.fs.cat_file(final), intent.checksum)
        except FileNotFoundError:
            return False
    if intent.kind == "symlink":
        return os.path.islink(final) and os.readlink(final) == intent.source
    if intent.kind == "relsymlink":
        return os.path.islink(final) and os.path.normpath(
            os.path.join(os.path.dirname(final), os.readlink(final))) == os.path.normpath(intent.source or "")
    try:
        st = os.lstat(final)
    except FileNotFoundError:
        return False
    if intent.kind in ("move", "hardlink") and intent.identity is not None:
        if [st.st_dev, st.st_ino] == intent.identity[:2]:
            return True
    if intent.checksum is None or os.path.islink(final):
        return False
    with open(final, "rb") as stream:
        return verify(stream.read(), intent.checksum)


def _finish_move(datastore, intent: Intent) -> bool:
    """A copy-then-delete move whose copy was committed: delete the source if it is still the very
    file that was copied (same inode, size and modification time as recorded)."""
    source = intent.source
    if not source or intent.identity is None:
        return False
    try:
        st = os.stat(source)
    except FileNotFoundError:
        return False
    if [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns] != intent.identity:
        return False
    final = datastore.full_path(intent.path)
    if datastore.local:
        try:
            placed = os.stat(final)
        except FileNotFoundError:
            return False
        if [placed.st_dev, placed.st_ino] == intent.identity[:2]:
            return False  # the very same file (it was renamed, and is linked twice): nothing to delete
    elif not datastore.fs.exists(final):
        return False
    os.unlink(source)
    return True


def _put_back(datastore, final: str, source: str) -> None:
    """Move a user's file from the datastore back to where it came from (never over another file)."""
    os.makedirs(os.path.dirname(source), exist_ok=True)
    if not datastore.local:
        staged = f"{source}.skybutler-restore"
        datastore.fs.get_file(final, staged)
        rename_no_replace(staged, source)
        datastore.fs.rm_file(final)
        return
    try:
        rename_no_replace(final, source)
    except OSError as err:
        if err.errno != 18:  # EXDEV: across devices, copy then delete
            raise
        staged = f"{source}.skybutler-restore"
        shutil.copy2(final, staged)
        rename_no_replace(staged, source)
        os.unlink(final)
    datastore.prune_empty_dirs([os.path.dirname(final)])
