"""The CUDA build of upstream's YOLO layer: loading it and reading GPU arrays.

The module ``pydarknet_loss._yolo_cuda`` exists only where the package was
built with nvcc, cuBLAS and cuRAND.  It imports without a GPU; a forward
pass there raises ``NoCudaDeviceError`` before any upstream CUDA code runs.
"""

import math

INT_MAX = 2**31 - 1


class CudaUnavailableError(RuntimeError):
    """The CUDA module was not built, so the layer cannot run on a GPU."""


class NoCudaDeviceError(CudaUnavailableError):
    """The CUDA module is built, but the CUDA runtime found no device."""


def is_built():
    """Return True when the package was built with its CUDA module."""
    try:
        from pydarknet_loss import _yolo_cuda  # noqa: F401
    except ImportError:
        return False
    return True


def device_count():
    """Return the number of CUDA devices; 0 without the CUDA module or a driver."""
    if not is_built():
        return 0
    from pydarknet_loss import _yolo_cuda

    return _yolo_cuda.device_count()[0]


def load_module():
    """Return the CUDA module after checking that a device is present.

    Raises
    ------
    CudaUnavailableError
        When the package was built without CUDA.
    NoCudaDeviceError
        When the CUDA runtime finds no device (or no driver).
    """
    try:
        from pydarknet_loss import _yolo_cuda
    except ImportError as error:
        raise CudaUnavailableError(
            "pydarknet_loss was built without its CUDA module: reinstall it "
            "where nvcc is found, with cuBLAS and cuRAND in the toolkit or from "
            "'pip install nvidia-cublas nvidia-curand'; the build output line "
            "'pydarknet_loss: building the CPU module only' gives the reason "
            f"({error})"
        ) from error

    count, message = _yolo_cuda.device_count()
    if count == 0:
        raise NoCudaDeviceError(f"no CUDA device was found: {message}")
    return _yolo_cuda


def is_device_array(value):
    """Return True for an object that exposes ``__cuda_array_interface__``."""
    return hasattr(value, "__cuda_array_interface__")


def device_logits(array, channels):
    """Return (device pointer, shape) of GPU logits after checking them.

    Parameters
    ----------
    array : object with ``__cuda_array_interface__``
        A CuPy array, PyTorch CUDA tensor or similar.
    channels : int
        The channels the layer expects, ``n * (5 + classes)``.

    Raises
    ------
    TypeError
        On a dtype other than little-endian float32.
    ValueError
        On a shape that does not match the layer, a masked or empty array,
        or strides that are not C-contiguous.
    """
    interface = array.__cuda_array_interface__
    shape = tuple(int(size) for size in interface["shape"])
    typestr = interface["typestr"]
    if typestr != "<f4":
        raise TypeError(
            f"GPU logits must be float32 (typestr '<f4'), got {typestr!r}: "
            "convert them on the device first"
        )
    if len(shape) != 4:
        raise ValueError(
            f"logits must be [batch, n*(5+classes), h, w], got shape {shape}"
        )
    if shape[1] != channels:
        raise ValueError(
            f"logits have {shape[1]} channels but the layer expects {channels}"
        )
    if min(shape) < 1:
        raise ValueError(f"logits must not be empty, got shape {shape}")
    if math.prod(shape) > INT_MAX:
        raise ValueError(
            f"logits hold {math.prod(shape)} values; upstream indexes with C int, "
            f"so at most {INT_MAX} fit"
        )
    if interface.get("mask") is not None:
        raise ValueError("masked GPU arrays are not supported")

    strides = interface.get("strides")
    if strides is not None and not _is_c_contiguous(shape, strides):
        raise ValueError(
            f"GPU logits must be C-contiguous, got strides {tuple(strides)} for "
            f"shape {shape}: call .contiguous() or cupy.ascontiguousarray first"
        )

    pointer = int(interface["data"][0])
    if pointer == 0:
        raise ValueError("GPU logits have a null data pointer")
    return pointer, shape


def _is_c_contiguous(shape, strides):
    expected = 4
    for size, stride in zip(reversed(shape), reversed(strides)):
        # the stride of an axis of length 1 is never used to address memory
        if size != 1 and stride != expected:
            return False
        expected *= size
    return True
