"""Put back the GGUF metadata `llama_model_save_to_file` leaves out of a checkpoint.

llama.cpp writes a trained model's weights and the keys it runs on, but not the chat template or
the `general.*` facts, so a checkpoint could not chat; and it writes the training window as the
trained context length. Rewriting 500 MB of tensors through gguf-py's writer to fix a few keys
would cost seconds per epoch; instead the file is spliced: the header's key count is raised, the
missing key/value records (and the context length) are copied byte for byte from the model the
job started from, the tensor records follow, and the tensor data (whose offsets are relative to
the start of the data section) is copied unchanged after re-padding.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path
from typing import Any

from gguf import GGUFReader

DEFAULT_ALIGNMENT = 32


def restore_metadata(source: Path, checkpoint: Path, target: Path) -> None:
    """Write `target`: `checkpoint` plus every key of `source` it lacks, and the context length of
    `source` (training sets the model's trained context to the training window, and llama.cpp
    writes that: a checkpoint would otherwise claim a 256-token context)."""
    donor = GGUFReader(source)
    saved = GGUFReader(checkpoint)
    # (from the donor?, field), in the checkpoint's order, then the keys only the donor has
    records = [(True, donor.fields[name]) if _donor_wins(name, donor) else (False, field)
               for name, field in saved.fields.items() if not name.startswith("GGUF.")]
    records += [(True, field) for name, field in donor.fields.items()
                if name not in saved.fields and not name.startswith("GGUF.")]
    kv_end = max(_end(f) for f in saved.fields.values())
    infos_end = max(_end(t.field) for t in saved.tensors) if saved.tensors else kv_end
    alignment = int(saved.fields["general.alignment"].parts[-1][0]) if "general.alignment" in saved.fields \
        else DEFAULT_ALIGNMENT
    with open(source, "rb") as donor_file, open(checkpoint, "rb") as old, open(target, "wb") as new:
        new.write(old.read(16) + struct.pack("<Q", len(records)))
        for from_donor, field in records:
            file = donor_file if from_donor else old
            file.seek(field.offset)
            new.write(file.read(_end(field) - field.offset))
        old.seek(kv_end)
        new.write(old.read(infos_end - kv_end))
        new.write(b"\0" * (-new.tell() % alignment))
        old.seek(saved.data_offset)
        shutil.copyfileobj(old, new, 16 * 1024 * 1024)


def _donor_wins(name: str, donor: GGUFReader) -> bool:
    return name.endswith(".context_length") and name in donor.fields


def _end(field: Any) -> int:
    return int(field.offset + sum(part.nbytes for part in field.parts))
