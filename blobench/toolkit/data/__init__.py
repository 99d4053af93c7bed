"""The data layer: registered datasets, where they live, how they are fetched and read.

- :mod:`~blobench.toolkit.data.catalog`: the registry (files, SHA-256, license, citation, source,
  parser) of fashion_mnist, mnist, cifar10, ijcnn1, covtype, news20, omniglot, miniimagenet;
- :mod:`~blobench.toolkit.data.root`: the data root (``--data-dir`` > ``$BLOBENCH_DATA`` >
  ``~/.cache/blobench/data``) and system-wide copies;
- :mod:`~blobench.toolkit.data.formats`: our parsers (IDX, svmlight, CIFAR-10 binary, image
  folders as :class:`~blobench.toolkit.data.formats.ImageSet`; no pickle);
- :mod:`~blobench.toolkit.data.checksum`: SHA-256 verification;
- :mod:`~blobench.toolkit.data.fetch`: download with a progress bar, verified, atomic;
- :mod:`~blobench.toolkit.data.load`: :func:`load_dataset`, raising
  :class:`~blobench.contracts.errors.DataMissing` when the files are absent.

scikit-learn's bundled datasets (breast_cancer, digits) are read by
:mod:`blobench.toolkit.datasets` as before.
"""

from blobench.toolkit.data.catalog import DATASETS, DataFile, Dataset, dataset
from blobench.toolkit.data.load import load_dataset, status
from blobench.toolkit.data.root import data_root

__all__ = ["DATASETS", "DataFile", "Dataset", "data_root", "dataset", "load_dataset", "status"]
