// Fused linearisation of the dense RGB-D alignment cost (gs4_slam/tracking/solver.py).
//
// Why compiled: the NumPy formulation makes ~40 passes over the points per
// Gauss-Newton iteration (gathers, masks, Jacobian columns, the [N, 6] product),
// about 2 ms at 320x240; one fused pass that accumulates the 6x6 normal equations
// directly takes ~0.1 ms and allocates nothing, which is what lets the tracker
// run well above 30 frames/s on two shared CPU cores. The NumPy code in
// solver.py stays the reference implementation, the fallback, and the test
// oracle: every expression here mirrors one there.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>

namespace py = pybind11;

namespace {

template <typename T>
const T* data_of(const py::array_t<T, py::array::c_style | py::array::forcecast>& a, py::ssize_t size,
                 const char* what) {
  if (a.size() != size) throw std::invalid_argument(std::string(what) + " has the wrong size");
  return a.data();
}

inline float huber_weight(float scaled, float k) {
  const float m = std::fabs(scaled);
  return m <= k ? 1.0f : k / std::fmax(m, 1e-12f);
}

// Residual rows are buffered in structure-of-arrays blocks so that the 21
// products of the normal matrix run as vectorised loops over a block (float,
// then added into double accumulators per block: float sums of 512 terms lose
// nothing a Gauss-Newton step would notice).
constexpr int kBlock = 512;

struct RowBlock {
  float J[6][kBlock];
  float w[kBlock];  // robust weight / sigma^2
  float r[kBlock];
  int n = 0;
};

void flush(RowBlock& b, double* H, double* g) {
  const int n = b.n;
  for (int i = 0; i < 6; ++i) {
    const float* Ji = b.J[i];
    float gi = 0.0f;
    for (int k = 0; k < n; ++k) gi += b.w[k] * Ji[k] * b.r[k];
    g[i] += gi;
    for (int j = i; j < 6; ++j) {
      const float* Jj = b.J[j];
      float hij = 0.0f;
      for (int k = 0; k < n; ++k) hij += b.w[k] * Ji[k] * Jj[k];
      H[i * 6 + j] += hij;
    }
  }
  b.n = 0;
}

// Row [d, p x d]: derivative of d . p under p -> p + v + w x p.
inline void push_row(RowBlock& b, const float* p, const float* d, float w, float r, double* H, double* g) {
  const int k = b.n;
  b.J[0][k] = d[0];
  b.J[1][k] = d[1];
  b.J[2][k] = d[2];
  b.J[3][k] = p[1] * d[2] - p[2] * d[1];
  b.J[4][k] = p[2] * d[0] - p[0] * d[2];
  b.J[5][k] = p[0] * d[1] - p[1] * d[0];
  b.w[k] = w;
  b.r[k] = r;
  if (++b.n == kBlock) flush(b, H, g);
}

}  // namespace

// Returns (H [6, 6] float64, g [6] float64, stats [5] float64 = (correspondences,
// sum r_g^2, sum r_p^2, inliers, sum (r_g / sigma_g)^2)); an inlier has |r_g| <= inlier_k sigma_g.
py::tuple linearize(py::array_t<float, py::array::c_style | py::array::forcecast> geometry,
                    py::array_t<bool, py::array::c_style | py::array::forcecast> valid,
                    py::array_t<float, py::array::c_style | py::array::forcecast> photo, int width, int height,
                    double fx, double fy, double cx, double cy,
                    py::array_t<float, py::array::c_style | py::array::forcecast> points,
                    py::array_t<float, py::array::c_style | py::array::forcecast> gray,
                    py::array_t<double, py::array::c_style | py::array::forcecast> T_ref_src, double min_depth_m,
                    double max_correspondence_m, double geometric_sigma_m, double photometric_sigma,
                    double photometric_weight, double huber_k, double inlier_k) {
  const py::ssize_t hw = static_cast<py::ssize_t>(width) * height;
  const float* geo = data_of(geometry, hw * 6, "geometry");
  const bool* ok = data_of(valid, hw, "valid");
  const float* ph = data_of(photo, hw * 3, "photo");
  const py::ssize_t n = gray.size();
  const float* pts = data_of(points, n * 3, "points");
  const float* gr = gray.data();
  const double* Tm = data_of(T_ref_src, 16, "T_ref_src");

  float R[9], t[3];
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) R[r * 3 + c] = static_cast<float>(Tm[r * 4 + c]);
    t[r] = static_cast<float>(Tm[r * 4 + 3]);
  }
  const float ffx = static_cast<float>(fx), ffy = static_cast<float>(fy);
  const float fcx = static_cast<float>(cx), fcy = static_cast<float>(cy);
  const float zmin = static_cast<float>(min_depth_m);
  const float max_d2 = static_cast<float>(max_correspondence_m * max_correspondence_m);
  const float sg0 = static_cast<float>(geometric_sigma_m);
  const float k = static_cast<float>(huber_k);
  const float sp = static_cast<float>(photometric_sigma);
  const double photo_scale = photometric_weight / (photometric_sigma * photometric_sigma);

  double H[36] = {0}, g[6] = {0};
  double count = 0, sum_g2 = 0, sum_p2 = 0, inliers = 0, sum_n2 = 0;
  const float kin = static_cast<float>(inlier_k);
  {
    py::gil_scoped_release release;
    RowBlock block;
    for (py::ssize_t i = 0; i < n; ++i) {
      const float* p = pts + 3 * i;
      float q[3];
      for (int r = 0; r < 3; ++r) q[r] = R[r * 3] * p[0] + R[r * 3 + 1] * p[1] + R[r * 3 + 2] * p[2] + t[r];
      if (!(q[2] > zmin)) continue;
      const float inv_z = 1.0f / q[2];
      const float u = q[0] * inv_z * ffx + fcx;
      const float v = q[1] * inv_z * ffy + fcy;
      if (!(u >= 0.0f && u < width - 1 && v >= 0.0f && v < height - 1)) continue;
      const py::ssize_t near = static_cast<py::ssize_t>(v + 0.5f) * width + static_cast<py::ssize_t>(u + 0.5f);
      if (!ok[near]) continue;
      const float* gv = geo + 6 * near;
      const float diff[3] = {q[0] - gv[0], q[1] - gv[1], q[2] - gv[2]};
      if (!(diff[0] * diff[0] + diff[1] * diff[1] + diff[2] * diff[2] < max_d2)) continue;
      const float* normal = gv + 3;
      const float r_g = diff[0] * normal[0] + diff[1] * normal[1] + diff[2] * normal[2];

      const int u0 = static_cast<int>(u), v0 = static_cast<int>(v);
      const float fu = u - u0, fv = v - v0;
      const py::ssize_t c = static_cast<py::ssize_t>(v0) * width + u0;
      float s[3];
      for (int ch = 0; ch < 3; ++ch) {
        const float top = ph[3 * c + ch] * (1.0f - fu) + ph[3 * (c + 1) + ch] * fu;
        const float bottom = ph[3 * (c + width) + ch] * (1.0f - fu) + ph[3 * (c + width + 1) + ch] * fu;
        s[ch] = top * (1.0f - fv) + bottom * fv;
      }
      const float r_p = s[0] - gr[i];
      float grad[3];
      grad[0] = s[1] * ffx * inv_z;
      grad[1] = s[2] * ffy * inv_z;
      grad[2] = -(grad[0] * q[0] + grad[1] * q[1]) * inv_z;

      const float zc = std::fmax(q[2], 0.5f);
      const float sigma_g = sg0 * zc * zc;
      const float n_g = r_g / sigma_g;
      const float w_g = huber_weight(n_g, k) / (sigma_g * sigma_g);
      const float w_p = huber_weight(r_p / sp, k);

      push_row(block, q, normal, w_g, r_g, H, g);
      push_row(block, q, grad, w_p * photo_scale, r_p, H, g);
      count += 1;
      sum_g2 += static_cast<double>(r_g) * r_g;
      sum_p2 += static_cast<double>(r_p) * r_p;
      sum_n2 += static_cast<double>(n_g) * n_g;
      inliers += std::fabs(n_g) <= kin ? 1.0 : 0.0;
    }
    flush(block, H, g);
  }
  py::array_t<double> H_out({6, 6});
  py::array_t<double> g_out(6);
  py::array_t<double> stats(5);
  auto Ho = H_out.mutable_unchecked<2>();
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 6; ++j) Ho(i, j) = j >= i ? H[i * 6 + j] : H[j * 6 + i];
  auto go = g_out.mutable_unchecked<1>();
  for (int i = 0; i < 6; ++i) go(i) = g[i];
  auto so = stats.mutable_unchecked<1>();
  so(0) = count;
  so(1) = sum_g2;
  so(2) = sum_p2;
  so(3) = inliers;
  so(4) = sum_n2;
  return py::make_tuple(H_out, g_out, stats);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "gs4_slam tracking kernels (CPU)";
  m.def("linearize", &linearize, "Normal equations of the joint point-to-plane + photometric cost");
}
