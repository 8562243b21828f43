"""Native dataset importers: published files → the rater-dataset format (see docs/datasets.md).

Each `parse_*` reads the published files into a `ParsedDataset` (checked, no features yet);
`write_import` (or `merge_personality`, `write_ava`) attaches features from a feature store and
writes the result atomically.
"""

from piaa.tasks.importers.aadb import parse_aadb
from piaa.tasks.importers.ava import parse_ava, write_ava
from piaa.tasks.importers.common import ImportReport, ParsedDataset, write_import
from piaa.tasks.importers.flickr_aes import parse_flickr_aes
from piaa.tasks.importers.lapis import parse_lapis
from piaa.tasks.importers.para import big_five_to_para, para_to_big_five, parse_para
from piaa.tasks.importers.psychoflickr import merge_personality, parse_psychoflickr
from piaa.tasks.importers.real_cur import parse_real_cur

__all__ = [
    "ImportReport", "ParsedDataset", "big_five_to_para", "merge_personality", "para_to_big_five", "parse_aadb", "parse_ava",
    "parse_flickr_aes", "parse_lapis", "parse_para", "parse_psychoflickr", "parse_real_cur", "write_ava", "write_import",
]
