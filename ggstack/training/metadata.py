"""Put back the GGUF metadata `llama_model_save_to_file` leaves out of a checkpoint.

llama.cpp writes a trained model's weights and the keys it runs on, but not the chat template
or the `general.*` facts, so a checkpoint could not chat. Rewriting 500 MB of tensors through
gguf-py's writer to add a few keys would cost seconds per epoch; instead the file is spliced:
the header's key count is raised, the missing key/value records are copied byte for byte from
the model the job started from, the tensor records follow, and the tensor data (whose offsets
are relative to the start of the data section) is copied unchanged after re-padding.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

from gguf import GGUFReader

#: Bytes before the first key/value record: magic, version, tensor count, key count.
HEADER = 24
DEFAULT_ALIGNMENT = 32


def restore_metadata(source: Path, checkpoint: Path, target: Path) -> None:
    """Write `target`: `checkpoint` plus every key of `source` it lacks."""
    donor = GGUFReader(source)
    saved = GGUFReader(checkpoint)
    missing = [field for name, field in donor.fields.items()
               if name not in saved.fields and not name.startswith("GGUF.")]
    kv_end = max(_end(f) for f in saved.fields.values())
    infos_end = max(_end(t.field) for t in saved.tensors) if saved.tensors else kv_end
    alignment = int(saved.fields["general.alignment"].parts[-1][0]) if "general.alignment" in saved.fields \
        else DEFAULT_ALIGNMENT
    kv_count = int(saved.fields["GGUF.kv_count"].parts[0][0])
    with open(source, "rb") as donor_file, open(checkpoint, "rb") as old, open(target, "wb") as new:
        head = old.read(HEADER)
        new.write(head[:16] + struct.pack("<Q", kv_count + len(missing)))
        new.write(old.read(kv_end - HEADER))
        for field in missing:
            donor_file.seek(field.offset)
            new.write(donor_file.read(_end(field) - field.offset))
        new.write(old.read(infos_end - kv_end))
        new.write(b"\0" * (-new.tell() % alignment))
        old.seek(saved.data_offset)
        shutil.copyfileobj(old, new, 16 * 1024 * 1024)


def _end(field) -> int:
    return int(field.offset + sum(part.nbytes for part in field.parts))
