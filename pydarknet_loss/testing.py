"""Assertions for a fork's test suite.

A fork's tests can hold its YOLO layer to a golden file in a few lines::

    from pydarknet_loss.testing import assert_matches_golden

    def test_yolo_loss_unchanged():
        assert_matches_golden("myfork", "tests/yolo_golden.npz")

where ``myfork`` was built with ``pydarknet-loss build --src . --name
myfork`` and the golden file was written by ``pydarknet-loss record``.
"""

from pydarknet_loss.compare import DEFAULT_TOLERANCE, compare_backends, verify_golden


def assert_matches_golden(backend, path, *, tolerance=DEFAULT_TOLERANCE, options=None):
    """Raise AssertionError unless ``backend`` reproduces a golden file.

    Parameters
    ----------
    backend : str or Backend
        Backend name or loaded backend.
    path : str or os.PathLike
        Golden ``.npz`` written by ``pydarknet-loss record``.
    tolerance : float
        Largest absolute difference of a delta entry that still agrees.
    options : dict, optional
        ``[yolo]`` options for the checked backend.

    Returns
    -------
    CompareReport
        The report, when every component agrees.
    """
    report = verify_golden(backend, path, tolerance=tolerance, options=options)
    if not report.ok:
        raise AssertionError(report.format())
    return report


def assert_backends_match(a, b, cases=None, *, tolerance=DEFAULT_TOLERANCE, **options):
    """Raise AssertionError unless backends ``a`` and ``b`` agree on ``cases``.

    Parameters
    ----------
    a, b : str or Backend
        Backend names or loaded backends.
    cases : list of Case, optional
        Default: the seeded cases of :func:`pydarknet_loss.compare.generate_cases`.
    tolerance : float
        Largest absolute difference of a delta entry that still agrees.
    **options
        ``options_a`` and ``options_b`` of
        :func:`pydarknet_loss.compare.compare_backends`.

    Returns
    -------
    CompareReport
        The report, when every component agrees.
    """
    report = compare_backends(a, b, cases, tolerance=tolerance, **options)
    if not report.ok:
        raise AssertionError(report.format())
    return report
