"""A step's pytree of `(B, ...)` arrays as one `(B, n)` array per dtype, and back.

The scan writes what each step keeps (its output, and for the backward pass its
residuals) into `(T, B, ...)` buffers. One buffer per leaf costs one in-place
update kernel per leaf and step, and XLA compiles every kernel separately; packed,
a step writes one array per dtype and the backward pass reads one.

Shape legend: B batch (rows), n the packed features of one dtype.
"""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp


@jax.tree_util.register_static  # no leaves: it can ride along with residuals
@dataclasses.dataclass(frozen=True)
class Packing:
    """Where each leaf of a pytree of `(B, ...)` arrays lives in the packed arrays.

    Attributes:
        treedef: the pytree's structure.
        shapes: each leaf's shape after B.
        slots: per leaf, `(group, offset)`: its packed array and its first column.
        dtypes: per packed array (group), its dtype.
        widths: per packed array, its columns n.
    """

    treedef: Any
    shapes: tuple[tuple[int, ...], ...]
    slots: tuple[tuple[int, int], ...]
    dtypes: tuple[Any, ...]
    widths: tuple[int, ...]

    @classmethod
    def of(cls, tree: Any) -> "Packing":
        """The packing of `tree`, whose leaves (arrays or shape structs) are `(B, ...)`."""
        leaves, treedef = jax.tree.flatten(tree)
        dtypes: list[Any] = []
        widths: list[int] = []
        slots = []
        for leaf in leaves:
            dtype = jnp.dtype(leaf.dtype)
            if dtype not in dtypes:
                dtypes.append(dtype)
                widths.append(0)
            group = dtypes.index(dtype)
            slots.append((group, widths[group]))
            widths[group] += math.prod(leaf.shape[1:])
        shapes = tuple(tuple(leaf.shape[1:]) for leaf in leaves)
        return cls(treedef, shapes, tuple(slots), tuple(dtypes), tuple(widths))

    def pack(self, tree: Any) -> tuple[jax.Array, ...]:
        """`tree`'s leaves `(B, ...)` as one `(B, n)` array per dtype."""
        leaves = self.treedef.flatten_up_to(tree)
        groups: list[list[jax.Array]] = [[] for _ in self.dtypes]
        for leaf, (group, _) in zip(leaves, self.slots, strict=True):
            groups[group].append(leaf.reshape(leaf.shape[0], -1))
        return tuple(parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)
                     for parts in groups)  # fmt: skip

    def unpack(self, packed: tuple[jax.Array, ...]) -> Any:
        """The pytree from `pack`'s arrays; any leading axes `(..., n)` are kept."""
        leaves = []
        for shape, (group, offset) in zip(self.shapes, self.slots, strict=True):
            array = packed[group]
            columns = array[..., offset : offset + math.prod(shape)]
            leaves.append(columns.reshape(array.shape[:-1] + shape))
        return self.treedef.unflatten(leaves)

    def zeros(self, leading: tuple[int, ...]) -> tuple[jax.Array, ...]:
        """Zero packed arrays `(*leading, n)`."""
        return tuple(jnp.zeros((*leading, width), dtype)
                     for dtype, width in zip(self.dtypes, self.widths, strict=True))  # fmt: skip
