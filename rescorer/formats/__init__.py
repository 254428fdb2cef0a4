"""N-best and text formats, read and written: JSONL (`jsonl`), Kaldi archives and lattices
(`kaldi`), ESPnet decode directories (`espnet`), HyPoradise JSON (`hyporadise`), sclite trn
(`trn`), named-score mappings (`score_mapping`), the text-file rules every reader shares
(`text_files`), and one entry point for all of them (`reader.read_nbest`)."""
