"""A small residual network (残差网络) with batch normalisation, and layer geometry (感受野).

Used in chapters: 03.

* :func:`layer_geometry` computes, for a stack of convolution/pooling layers, each layer's output
  size, receptive field, jump (distance in input pixels between neighbouring outputs) and the
  start of output pixel 0's receptive field (Dumoulin & Visin 2016, "A guide to convolution
  arithmetic for deep learning", relationship 6; Araujo et al. 2019, "Computing receptive fields
  of convolutional neural networks", Distill, eq. 1-2):
  ``out = floor((n + 2p - k) / s) + 1``, ``r_l = r_{l-1} + (k_l - 1) j_{l-1}``,
  ``j_l = j_{l-1} s_l``, ``start_l = start_{l-1} - p_l j_{l-1}``.
* :class:`ResNet`: He et al. 2016 ("Deep residual learning for image recognition", CVPR, §3 and
  §4.2, the CIFAR-10 networks) scaled down for 28×28 grey images: a 3×3 ``VALID`` stem
  convolution + BN + ReLU and a 2×2 max pool (28 → 26 → 13), then three stages of basic blocks
  (two 3×3 convolutions with BN, Ioffe & Szegedy 2015) of widths 16, 32, 64, the second and
  third starting with stride 2 (13 → 7 → 4), a 1×1 convolution + BN on the shortcut where the
  shape changes (He et al.'s option B), global average pooling and a dense layer. Convolutions
  followed by BN have no bias (BN's β replaces it). 77,754 parameters with the defaults
  (:func:`resnet_param_count`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from lmcourse.models.cnn import conv_few_channels, max_pool_2x2
from lmcourse.validation import check_fraction, check_int, check_positive_int

__all__ = ["PLAIN_CNN_LAYERS", "BasicBlock", "Geometry", "LayerSpec", "ResNet", "layer_geometry",
           "resnet_param_count"]


class LayerSpec(NamedTuple):
    """One convolution or pooling layer along a path: square ``kernel``, ``stride``, symmetric
    zero ``padding`` (pixels added on each side), and a ``name`` for printing."""

    name: str
    kernel: int
    stride: int = 1
    padding: int = 0


class Geometry(NamedTuple):
    """What :func:`layer_geometry` computes for one layer (all in pixels, integers).

    ``size``: output side length; ``receptive_field``: side of the input window that one output
    pixel sees; ``jump``: input distance between neighbouring output pixels (product of the
    strides so far); ``start``: input coordinate of the first row/column of output pixel 0's
    window (negative: the window starts in the padding).
    """

    name: str
    size: int
    receptive_field: int
    jump: int
    start: int


#: The chapter-03 plain CNN (:class:`lmcourse.models.cnn.CNN`), its convolutions and pools.
PLAIN_CNN_LAYERS = (LayerSpec("conv1", 3), LayerSpec("pool1", 2, 2), LayerSpec("conv2", 3),
                    LayerSpec("pool2", 2, 2), LayerSpec("conv3", 3))


def layer_geometry(input_size: int, layers: Sequence[LayerSpec]) -> list[Geometry]:
    """Output size and receptive field of every layer of a stack of convolutions/pools.

    For a layer with kernel :math:`k`, stride :math:`s` and padding :math:`p` on a side of
    :math:`n` pixels, :math:`n_{out} = \\lfloor (n + 2p - k)/s \\rfloor + 1`; the receptive field
    grows as :math:`r_l = r_{l-1} + (k_l - 1)\\, j_{l-1}` with :math:`j_l = j_{l-1} s_l`,
    :math:`r_0 = j_0 = 1` (Dumoulin & Visin 2016, relationship 6; Araujo et al. 2019, eq. 1-2).
    Output pixel :math:`i` of layer :math:`l` sees input rows
    ``start + i * jump … start + i * jump + receptive_field - 1`` (clipped to the image).

    Args:
        input_size: side of the (square) input in pixels, a positive integer.
        layers: the layers in order, each a :class:`LayerSpec` with ``kernel`` and ``stride``
            positive integers and ``padding`` a non-negative integer.

    Returns:
        One :class:`Geometry` per layer, in order.

    Raises:
        ValueError: a size, kernel or stride that is not a positive integer, a negative
            padding, or a layer whose kernel is larger than its padded input (output size < 1).
    """
    size = check_positive_int("input_size", input_size)
    field, jump, start = 1, 1, 0
    out = []
    for layer in layers:
        k = check_positive_int(f"{layer.name} kernel", layer.kernel)
        s = check_positive_int(f"{layer.name} stride", layer.stride)
        p = check_int(f"{layer.name} padding", layer.padding, 0)
        if size + 2 * p < k:
            raise ValueError(f"layer {layer.name!r}: kernel {k} does not fit in its input of "
                             f"{size} pixels plus padding {p} on each side; use a smaller kernel, "
                             "more padding or a larger input")
        size = (size + 2 * p - k) // s + 1
        field, start = field + (k - 1) * jump, start - p * jump
        jump *= s
        out.append(Geometry(layer.name, size, field, jump, start))
    return out


def resnet_param_count(in_channels: int = 1, widths: Sequence[int] = (16, 32, 64),
                       blocks_per_stage: int = 1, num_classes: int = 10) -> int:
    """Number of parameters of :class:`ResNet` with these hyper-parameters, from the formula.

    Stem: :math:`9 C_{in} w_1 + 2 w_1` (bias-free conv + BN's γ, β). A basic block from
    :math:`c` to :math:`w` channels: :math:`9cw + 2w + 9w^2 + 2w`, plus :math:`cw + 2w` for the
    1×1 shortcut convolution and its BN when :math:`c \\ne w` or the stride is 2. Head:
    :math:`w_{last} K + K`. BN's running mean and variance are not parameters (not trained).

    Args:
        in_channels, widths, blocks_per_stage, num_classes: as for :class:`ResNet`.

    Returns:
        The exact count (77,754 for the defaults).

    Raises:
        ValueError: as :class:`ResNet`.
    """
    in_channels, widths, blocks_per_stage, num_classes = _check_sizes(
        in_channels, widths, blocks_per_stage, num_classes)
    total = 9 * in_channels * widths[0] + 2 * widths[0]
    c = widths[0]
    for stage, w in enumerate(widths):
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            total += 9 * c * w + 2 * w + 9 * w * w + 2 * w
            if c != w or stride != 1:
                total += c * w + 2 * w
            c = w
    return total + c * num_classes + num_classes


def _check_sizes(in_channels, widths, blocks_per_stage, num_classes):
    in_channels = check_positive_int("in_channels", in_channels)
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or not widths:
        raise ValueError(f"widths must be a non-empty sequence of channel counts, one per stage, "
                         f"e.g. (16, 32, 64); got {widths!r}")
    widths = tuple(check_positive_int(f"widths[{i}]", w) for i, w in enumerate(widths))
    return (in_channels, widths, check_positive_int("blocks_per_stage", blocks_per_stage),
            check_positive_int("num_classes", num_classes))


def _conv3(c_in: int, c_out: int, stride: int, rngs: nnx.Rngs) -> nnx.Conv:
    return nnx.Conv(c_in, c_out, (3, 3), strides=stride, padding=((1, 1), (1, 1)),
                    use_bias=False, rngs=rngs)


class BasicBlock(nnx.Module):
    """He et al. 2016's basic block: ``relu(BN(conv(relu(BN(conv(x))))) + shortcut(x))``.

    ``(N, H, W, c_in)`` float32 → ``(N, ⌊(H - 1)/stride⌋ + 1, …, c_out)``. Both convolutions are
    3×3 with one pixel of zero padding; the first has the block's stride. The shortcut is the
    identity when the shape is unchanged, else a 1×1 convolution with that stride and a BN.

    Args:
        c_in, c_out: channels in and out (positive integers); stride: 1 or 2.
        rngs: ``nnx.Rngs`` for initialisation.
        momentum: BN running averages ``m ← momentum·m + (1 − momentum)·batch value``, in
            [0, 1] (0.9, PyTorch's default; Flax's own default 0.99 averages over ~100 steps,
            too slowly for runs of a few hundred steps).

    Raises:
        ValueError: a channel count that is not a positive integer, a stride other than 1, 2,
            or a momentum outside [0, 1].
    """

    def __init__(self, c_in: int, c_out: int, stride: int, rngs: nnx.Rngs,
                 momentum: float = 0.9):
        c_in, c_out = check_positive_int("c_in", c_in), check_positive_int("c_out", c_out)
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride!r}")
        momentum = check_fraction("momentum", momentum)
        self.conv1 = _conv3(c_in, c_out, stride, rngs)
        self.bn1 = nnx.BatchNorm(c_out, momentum=momentum, rngs=rngs)
        self.conv2 = _conv3(c_out, c_out, 1, rngs)
        self.bn2 = nnx.BatchNorm(c_out, momentum=momentum, rngs=rngs)
        shortcut = None
        if stride != 1 or c_in != c_out:
            shortcut = nnx.Sequential(
                nnx.Conv(c_in, c_out, (1, 1), strides=stride, padding="VALID", use_bias=False,
                         rngs=rngs),
                nnx.BatchNorm(c_out, momentum=momentum, rngs=rngs))
        self.shortcut = nnx.data(shortcut)

    def __call__(self, x: jax.Array) -> jax.Array:
        """The block's output; see the class docstring for shapes."""
        h = nnx.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return nnx.relu(h + (x if self.shortcut is None else self.shortcut(x)))


class ResNet(nnx.Module):
    """A small ResNet for 28×28 images: ``(N, 28, 28, C)`` float32 in [0, 1] → ``(N, K)`` logits.

    Stem (3×3 ``VALID`` conv, BN, ReLU, 2×2 max pool: 28 → 13), then ``len(widths)`` stages of
    ``blocks_per_stage`` :class:`BasicBlock` each (every stage after the first starts with
    stride 2: 13 → 7 → 4), global average pooling, a dense layer (He et al. 2016, §4.2, scaled
    down). BN layers follow ``model.train()`` / ``model.eval()`` (batch statistics and running
    averages updated / running averages used); :func:`lmcourse.training.evaluate` switches to
    eval mode itself. Parameters: :func:`resnet_param_count`.

    Args:
        rngs: ``nnx.Rngs`` for initialisation (Flax defaults: LeCun-normal kernels; BN γ = 1,
            β = 0).
        in_channels: image channels (1 for Fashion-MNIST); widths: channels of each stage;
            blocks_per_stage: basic blocks per stage; num_classes: logits. Positive integers.
        image_size: the side the network is built for (28); other sizes are refused.
        momentum: the BN layers' running-average momentum, in [0, 1] (see :class:`BasicBlock`).

    Raises:
        ValueError: a size that is not a positive integer, an ``image_size`` under 6 (too
            small for the stem), or a momentum outside [0, 1].
    """

    def __init__(self, rngs: nnx.Rngs, in_channels: int = 1, widths: Sequence[int] = (16, 32, 64),
                 blocks_per_stage: int = 1, num_classes: int = 10, image_size: int = 28,
                 momentum: float = 0.9):
        in_channels, widths, blocks_per_stage, num_classes = _check_sizes(
            in_channels, widths, blocks_per_stage, num_classes)
        momentum = check_fraction("momentum", momentum)
        self.image_size = check_int("image_size", image_size, 6)
        self.in_channels = in_channels
        # one input channel: the fast shifted-product forward of chapter 03 (same parameters)
        self.stem = nnx.Conv(in_channels, widths[0], (3, 3), padding="VALID", use_bias=False,
                             conv_general_dilated=conv_few_channels, rngs=rngs)
        self.stem_bn = nnx.BatchNorm(widths[0], momentum=momentum, rngs=rngs)
        blocks, c = [], widths[0]
        for stage, w in enumerate(widths):
            for block in range(blocks_per_stage):
                blocks.append(BasicBlock(c, w, 2 if stage > 0 and block == 0 else 1, rngs,
                                         momentum))
                c = w
        self.blocks = nnx.List(blocks)
        self.head = nnx.Linear(c, num_classes, rngs=rngs)

    def layer_specs(self) -> tuple[LayerSpec, ...]:
        """The longest path (stem, pool, both 3×3 convolutions of every block) for
        :func:`layer_geometry`; the 1×1 shortcuts see less than the convolutions beside them."""
        specs = [LayerSpec("stem", 3), LayerSpec("pool", 2, 2)]
        for i, block in enumerate(self.blocks):
            specs.append(LayerSpec(f"block{i + 1}.conv1", 3, block.conv1.strides, 1))
            specs.append(LayerSpec(f"block{i + 1}.conv2", 3, 1, 1))
        return tuple(specs)

    def _check_input(self, x: jax.Array) -> None:
        n = self.image_size
        if x.ndim != 4 or x.shape[1:] != (n, n, self.in_channels):
            raise ValueError(f"ResNet expects images of shape (N, {n}, {n}, {self.in_channels}) "
                             f"(NHWC), got {tuple(x.shape)}; add a channel axis with x[..., None], "
                             "a batch axis with x[None], or build the ResNet with the right "
                             "image_size and in_channels")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"ResNet expects float images scaled to [0, 1], got dtype {x.dtype}; "
                             "convert with lmcourse.training.to_float_images (uint8 / 255)")

    def feature_maps(self, x: jax.Array) -> dict[str, jax.Array]:
        """Every activation along :meth:`layer_specs`' path, by the same names.

        For inspection (shapes, receptive fields): call ``model.eval()`` first, since in training
        mode the BN layers update their running statistics (each block's first BN twice).

        Args:
            x: ``(N, image_size, image_size, in_channels)`` float images.

        Returns:
            ``{name: (N, h, h, channels) array}``; ``block{i}.conv2`` is the block's output.

        Raises:
            ValueError: as ``__call__``.
        """
        self._check_input(x)
        maps = {"stem": nnx.relu(self.stem_bn(self.stem(x)))}
        h = maps["pool"] = max_pool_2x2(maps["stem"])
        for i, block in enumerate(self.blocks):
            maps[f"block{i + 1}.conv1"] = nnx.relu(block.bn1(block.conv1(h)))
            h = maps[f"block{i + 1}.conv2"] = block(h)
        return maps

    def __call__(self, x: jax.Array) -> jax.Array:
        """Logits ``(N, num_classes)`` float32 for float images ``(N, image_size, image_size, C)``.

        Raises:
            ValueError: not 4-D NHWC of the built size and channels, or an integer dtype.
        """
        self._check_input(x)
        h = max_pool_2x2(nnx.relu(self.stem_bn(self.stem(x))))
        for block in self.blocks:
            h = block(h)
        return self.head(h.mean(axis=(1, 2)))        # global average pooling: (N, channels)

