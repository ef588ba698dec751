"""Type aliases shared by the package (jaxtyping annotations, checked at test time by beartype)."""

from typing import TypeAlias

from jaxtyping import Array, ArrayLike, Bool, Float, Int, Key, UInt32

#: A real scalar: a Python number or a rank-0 array.
RealScalarLike: TypeAlias = (
    bool | int | float | Bool[ArrayLike, ""] | Int[ArrayLike, ""] | Float[ArrayLike, ""]
)
#: A PRNG key, new-style or raw.
PRNGKey: TypeAlias = Key[Array, ""] | UInt32[Array, "2"]

__all__ = ["RealScalarLike", "PRNGKey", "Array", "ArrayLike", "Float", "Int", "Bool"]
