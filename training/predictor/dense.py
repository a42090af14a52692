"""XGBoost's in-place prediction through its C API, without the Python wrapper's per-call work.

``Booster.inplace_predict`` spends about 0.28 ms of Python per call before and after the
0.13 ms the C library needs for one row of this model (it re-checks the input's type against a
dozen frameworks, re-encodes its arguments as JSON and builds a class for the result); coming
from an idle CPU, as a quote does, that grows to 0.4 to 0.8 ms. Serving calls the same public C
function, ``XGBoosterPredictFromDense``, with its configuration encoded once, so the numbers are
XGBoost's own, bit for bit (``tests/unit/test_dense_predict.py``).
"""

from __future__ import annotations

import ctypes
import json

import numpy as np
import xgboost as xgb
from xgboost.libpath import find_lib_path

_LIB = ctypes.CDLL(find_lib_path()[0])  # the library xgboost itself loaded: dlopen shares it
_LIB.XGBGetLastError.restype = ctypes.c_char_p
_ULONG = ctypes.c_uint64  # bst_ulong


class DensePredictor:
    """Margins (the raw output) of float32 row-major rows; NaN is missing."""

    def __init__(self, booster: xgb.Booster):
        self.booster = booster  # kept: the handle lives as long as it does
        self.features = booster.num_features()
        self._config = json.dumps({"type": 0, "training": False, "iteration_begin": 0, "iteration_end": 0,
                                   "missing": float("nan"), "strict_shape": False, "cache_id": 0}).encode()  # fmt: skip

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.features:
            raise ValueError(f"rows must be (n, {self.features}), got {rows.shape}")
        if rows.shape[0] == 0:  # XGBoost's C function refuses a null data pointer; inplace_predict answers (0,)
            return np.empty(0, dtype=np.float32)
        interface = (f'{{"data": [{rows.ctypes.data}, true], "strides": null, "typestr": "<f4", '
                     f'"shape": [{rows.shape[0]}, {rows.shape[1]}], "version": 3}}').encode()  # fmt: skip
        shape, dims, out = ctypes.POINTER(_ULONG)(), _ULONG(), ctypes.POINTER(ctypes.c_float)()
        status = _LIB.XGBoosterPredictFromDense(self.booster.handle, interface, self._config, None,
                                                ctypes.byref(shape), ctypes.byref(dims), ctypes.byref(out))  # fmt: skip
        if status != 0:
            raise xgb.core.XGBoostError(_LIB.XGBGetLastError().decode())
        size = 1
        for k in range(dims.value):
            size *= shape[k]
        # The result lives in the booster's buffer until its next prediction: copy it out.
        return np.ctypeslib.as_array(out, shape=(size,)).copy()
