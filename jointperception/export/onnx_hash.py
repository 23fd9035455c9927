"""The content hash of an ONNX file: sha256 of its serialized graph (nodes and initializers),
kept in ``metadata_props`` under ``integrity.HASH_KEY`` by every writer and checked by
``export.onnx.load_onnx_proto``."""
from __future__ import annotations

import hashlib
from pathlib import Path

import onnx

from jointperception.integrity import HASH_KEY, check_hash


def graph_sha256(proto: onnx.ModelProto) -> str:
    return hashlib.sha256(proto.graph.SerializeToString(deterministic=True)).hexdigest()


def stamp_graph_hash(proto: onnx.ModelProto) -> None:
    """Record (or refresh) the graph's hash in ``proto.metadata_props``; call it last before saving."""
    props = {entry.key: entry.value for entry in proto.metadata_props}
    onnx.helper.set_model_props(proto, props | {HASH_KEY: graph_sha256(proto)})


def check_graph_hash(proto: onnx.ModelProto, path: Path) -> None:
    """ModelFileError naming ``path`` when the graph differs from the hash recorded at save time."""
    recorded = {entry.key: entry.value for entry in proto.metadata_props}.get(HASH_KEY)
    check_hash(path, recorded, graph_sha256(proto))
