"""Handwriting data: importers, the one preprocessing pipeline, and the line corpus (Sec. 4).

Public API:
- `engine.data.ink.Ink`, `InkRecord` -- what every importer returns;
- importers: `unipen.iter_unipen(path)`, `iam.read_iam(dir)`, `inkml.read_inkml(path)` /
  `write_inkml`, `native.load_ink(path)` / `save_ink`;
- `preprocess.preprocess_ink(ink) -> offsets (T, 3)` for training, priming and evaluation;
- `corpus.Corpus`, `corpus.load_corpus(path)`; `build_corpus.build_corpus(source)`.
"""
