"""The CUDA build: its presence, its errors without a GPU, and GPU vs CPU.

Tests that need a CUDA device skip with the reason where none is found;
scripts/gpu_check.sh runs them on a machine with one.
"""

import shutil
import subprocess

import numpy as np
import pytest

from conftest import YOLOV3_LAYERS, random_truth, yolov3_layer
from pydarknet_loss import _build_cuda, _yolo_cpu, cuda

CUDA_LIBRARY_NAMES = ("libcuda", "libcudart", "libcublas", "libcurand", "libnvrtc")

needs_module = pytest.mark.skipif(
    not cuda.is_built(), reason="the CUDA module was not built"
)
needs_device = pytest.mark.skipif(
    cuda.device_count() == 0, reason="no CUDA device found"
)


def toolkit_reason():
    """Return why this interpreter's build would skip CUDA, or None."""
    if _build_cuda.cuda_mode() == "off":
        return "PYDARKNET_CUDA=0"
    try:
        _build_cuda.configure()
    except _build_cuda.CudaUnavailable as error:
        return str(error)
    return None


class FakeDeviceArray:
    """An object with ``__cuda_array_interface__`` and no memory behind it."""

    def __init__(self, shape, typestr="<f4", strides=None, pointer=0x1000):
        self.__cuda_array_interface__ = {
            "shape": shape,
            "typestr": typestr,
            "strides": strides,
            "data": (pointer, True),
            "version": 3,
        }


def test_cuda_module_built_with_toolkit():
    reason = toolkit_reason()
    if reason:
        pytest.skip(f"the build skips CUDA here: {reason}")
    assert cuda.is_built()


@needs_module
def test_cuda_module_imports():
    from pydarknet_loss import _yolo_cuda

    assert _yolo_cuda.DEVICE == "cuda"
    assert _yolo_cuda.TRUTH_ROWS == _yolo_cpu.TRUTH_ROWS


@needs_module
def test_cuda_module_keeps_subnormals():
    from pydarknet_loss import _yolo_cuda  # noqa: F401

    assert np.float32(1e-40) * np.float32(1) != 0


@needs_module
def test_gpu_path_without_device_raises(rng):
    if cuda.device_count():
        pytest.skip("a CUDA device is present")
    layer, grid = yolov3_layer(0)
    logits = rng.normal(size=(1, layer.channels, grid, grid)).astype(np.float32)

    with pytest.raises(cuda.NoCudaDeviceError, match="no CUDA device was found"):
        layer.forward(logits, device="cuda")
    with pytest.raises(RuntimeError):
        layer.forward(logits, device="cuda")


def test_gpu_path_without_module_raises(rng):
    if cuda.is_built():
        pytest.skip("the CUDA module is built")
    layer, grid = yolov3_layer(0)
    logits = np.zeros((1, layer.channels, grid, grid), dtype=np.float32)

    with pytest.raises(cuda.CudaUnavailableError, match="built without"):
        layer.forward(logits, device="cuda")


def test_unknown_device_rejected():
    layer, grid = yolov3_layer(0)
    logits = np.zeros((1, layer.channels, grid, grid), dtype=np.float32)

    with pytest.raises(ValueError, match="device must be"):
        layer.forward(logits, device="tpu")


def test_device_array_on_cpu_rejected():
    layer, grid = yolov3_layer(0)
    logits = FakeDeviceArray((1, layer.channels, grid, grid))

    with pytest.raises(TypeError, match="device='cuda'"):
        layer.forward(logits)


@pytest.mark.parametrize(
    ("shape", "typestr", "strides", "error", "match"),
    [
        ((1, 255, 19, 19), "<f8", None, TypeError, "float32"),
        ((1, 255, 19), "<f4", None, ValueError, "must be"),
        ((1, 254, 19, 19), "<f4", None, ValueError, "channels"),
        ((0, 255, 19, 19), "<f4", None, ValueError, "empty"),
        (
            (1, 255, 19, 19),
            "<f4",
            (4 * 255 * 361, 4 * 361, 4, 4 * 19),
            ValueError,
            "C-contig",
        ),
        ((2, 255, 19, 19), "<f4", (4, 8 * 19 * 19, 8 * 19, 8), ValueError, "C-contig"),
    ],
)
def test_device_logits_rejected(shape, typestr, strides, error, match):
    array = FakeDeviceArray(shape, typestr, strides)

    with pytest.raises(error, match=match):
        cuda.device_logits(array, 255)


def test_device_logits_accepted():
    shape = (2, 255, 19, 19)
    strides = (4 * 255 * 19 * 19, 4 * 19 * 19, 4 * 19, 4)

    assert cuda.device_logits(FakeDeviceArray(shape), 255) == (0x1000, shape)
    assert cuda.device_logits(FakeDeviceArray(shape, strides=strides), 255)[1] == shape


def test_device_logits_null_pointer_rejected():
    with pytest.raises(ValueError, match="null"):
        cuda.device_logits(FakeDeviceArray((1, 255, 19, 19), pointer=0), 255)


def test_cpu_module_links_no_cuda():
    if shutil.which("ldd") is None:
        pytest.skip("ldd not found")
    listing = subprocess.run(
        ["ldd", _yolo_cpu.__file__], capture_output=True, text=True, check=True
    ).stdout

    for name in CUDA_LIBRARY_NAMES:
        assert name not in listing, listing


def test_arch_list_rejects_invalid(monkeypatch):
    nvcc = _build_cuda.find_nvcc()
    if nvcc is None:
        pytest.skip("nvcc not found")
    monkeypatch.setenv("PYDARKNET_CUDA_ARCHS", "sm_90,volta")

    with pytest.raises(_build_cuda.CudaUnavailable, match="volta"):
        _build_cuda.requested_archs(nvcc)


def test_gencode_flags():
    flags = _build_cuda.gencode_flags(("sm_80", "compute_90"))

    assert flags == [
        "-gencode=arch=compute_80,code=sm_80",
        "-gencode=arch=compute_90,code=compute_90",
    ]


# The device's expf has a maximum error of 2 ulp (CUDA C Programming Guide,
# single-precision functions), so a logistic output near 1 may differ from
# the host's by a few multiples of 2**-24, and a delta by twice that.
OUTPUT_ATOL = 1e-6
DELTA_ATOL = 2e-6


def assert_results_close(gpu, cpu):
    np.testing.assert_allclose(gpu.output, cpu.output, rtol=0, atol=OUTPUT_ATOL)
    if cpu.delta is None:
        assert gpu.delta is None
        return
    np.testing.assert_allclose(gpu.delta, cpu.delta, rtol=0, atol=DELTA_ATOL)
    assert gpu.cost == pytest.approx(cpu.cost, rel=1e-5)
    assert gpu.stats.region == cpu.stats.region
    assert gpu.stats.count == cpu.stats.count
    for name in (
        "avg_iou",
        "avg_class",
        "avg_obj",
        "avg_no_obj",
        "recall50",
        "recall75",
    ):
        expected = getattr(cpu.stats, name)
        assert getattr(gpu.stats, name) == pytest.approx(
            expected, rel=1e-5, nan_ok=True
        )


@needs_device
@pytest.mark.parametrize("position", range(len(YOLOV3_LAYERS)))
@pytest.mark.parametrize("batch", [1, 2, 5])
def test_gpu_matches_cpu(rng, position, batch):
    layer, grid = yolov3_layer(position)
    logits = rng.normal(0, 2, size=(batch, layer.channels, grid, grid)).astype(
        np.float32
    )
    truth = random_truth(rng, batch, 12)

    gpu = layer.forward(logits, truth, device="cuda")
    cpu = layer.forward(logits, truth)

    assert_results_close(gpu, cpu)


@needs_device
@pytest.mark.parametrize("position", range(len(YOLOV3_LAYERS)))
def test_gpu_inference_matches_cpu(rng, position):
    layer, grid = yolov3_layer(position)
    logits = rng.normal(0, 2, size=(3, layer.channels, grid, grid)).astype(np.float32)

    assert_results_close(layer.forward(logits, device="cuda"), layer.forward(logits))


@needs_device
def test_gpu_leaves_input_unchanged(rng):
    layer, grid = yolov3_layer(0)
    logits = rng.normal(size=(2, layer.channels, grid, grid)).astype(np.float32)
    copy = logits.copy()

    layer.forward(logits, random_truth(rng, 2, 5), device="cuda")

    np.testing.assert_array_equal(logits, copy)


def device_arrays():
    """Return (name, to_device) pairs for the GPU array libraries found."""
    found = []
    try:
        import cupy

        found.append(("cupy", cupy.asarray))
    except ImportError:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            found.append(("torch", lambda array: torch.from_numpy(array).cuda()))
    except ImportError:
        pass
    return found


@needs_device
@pytest.mark.parametrize("position", range(len(YOLOV3_LAYERS)))
def test_device_array_input_matches_host(rng, position):
    libraries = device_arrays()
    if not libraries:
        pytest.skip("neither cupy nor torch with CUDA is importable")
    layer, grid = yolov3_layer(position)
    logits = rng.normal(0, 2, size=(2, layer.channels, grid, grid)).astype(np.float32)
    truth = random_truth(rng, 2, 8)
    host = layer.forward(logits, truth, device="cuda")

    for _, to_device in libraries:
        on_device = layer.forward(to_device(logits), truth, device="cuda")

        np.testing.assert_array_equal(on_device.output, host.output)
        np.testing.assert_array_equal(on_device.delta, host.delta)
        assert on_device.cost == host.cost
