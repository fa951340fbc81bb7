// CPU kernels of the Gaussian renderer: fused EWA projection, tile binning,
// front-to-back compositing, and the backward passes. The PyTorch twins in
// gs4_slam/render/_torch_impl.py (_project_gaussians, _bin_tiles,
// _rasterize_to_pixels) define the semantics; tests hold the two to each other
// and to gsplat's reference.
//
// Compositing follows 3DGS/gsplat exactly (alpha = min(0.999, o * exp(-sigma)),
// Gaussians with alpha < 1/255 are skipped, a pixel stops before the Gaussian
// that would take its transmittance to <= 1e-4), so every backend renders the
// same image. What differs is the loop order: on a GPU each thread owns a pixel
// and tests every Gaussian of its tile; here a thread owns a tile and, for each
// Gaussian of the tile in depth order, visits only the pixels of the tile row
// spans that the Gaussian's alpha >= 1/255 ellipse covers. Small Gaussians,
// the common case in a SLAM map, then cost their footprint rather than a tile.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

namespace {

constexpr double kAlphaMin = 1.0 / 255.0;
constexpr double kAlphaMax = 0.999;
constexpr double kTransmittanceMin = 1e-4;
// Footprints are widened by this relative/absolute slack so that rounding never
// drops a pixel that the per-pixel alpha test would keep.
constexpr double kCutSlackRel = 1e-3;
constexpr double kCutSlackAbs = 1e-3;
constexpr double kPixelSlack = 1e-3;
// Coordinates are clamped before conversion to int (projections of Gaussians
// close to the image plane can be huge).
constexpr double kCoordLimit = 1e7;
// Per-Gaussian passes cost ~50 ns a Gaussian: below this many a second thread
// costs more to wake (and, on a busy machine, to get scheduled) than it saves.
constexpr int64_t kGaussianGrain = 32768;

// One projected Gaussian as the raster loops read it.
template <typename T>
struct Splat {
  T mx, my;  // 2D mean, pixel units (pixel (u, v) has its centre at u + 0.5, v + 0.5)
  T a, b, c; // conic: sigma = 0.5 * (a dx^2 + c dy^2) + b dx dy
  T op;      // opacity in (0, 1)
  T cut;     // 2 * log(255 * op) widened: a dx^2 + 2 b dx dy + c dy^2 <= cut covers alpha >= 1/255
  T inv_a;   // 1 / a
  T step;    // exp(-a), see RowFalloff
};

template <typename T>
inline Splat<T> load_splat(const T* means2d, const T* conics, const T* opacities, int64_t g) {
  Splat<T> s;
  s.mx = means2d[2 * g];
  s.my = means2d[2 * g + 1];
  s.a = conics[3 * g];
  s.b = conics[3 * g + 1];
  s.c = conics[3 * g + 2];
  s.op = opacities[g];
  const T cut = T(2) * std::log(T(255) * s.op);
  s.cut = cut * T(1 + kCutSlackRel) + T(kCutSlackAbs);
  s.inv_a = T(1) / s.a;
  s.step = std::exp(-s.a);
  return s;
}

// Columns [*x_lo, *x_hi) of row dy (pixel-centre offset from the mean) whose
// centres lie inside the footprint ellipse, clipped to [x_min, x_max).
template <typename T>
inline bool row_span(const Splat<T>& s, T dy, int x_min, int x_max, int* x_lo, int* x_hi) {
  const T q = s.b * dy;
  const T disc = q * q - s.a * (s.c * dy * dy - s.cut);
  if (!(disc >= T(0))) return false;
  const T root = std::sqrt(disc);
  const T base = s.mx - T(0.5);
  const T lo = base + (-q - root) * s.inv_a - T(kPixelSlack);
  const T hi = base + (-q + root) * s.inv_a + T(kPixelSlack);
  const T lim = T(kCoordLimit);
  *x_lo = std::max(x_min, static_cast<int>(std::ceil(std::max(-lim, std::min(lim, lo)))));
  *x_hi = std::min(x_max, static_cast<int>(std::floor(std::max(-lim, std::min(lim, hi)))) + 1);
  return *x_lo < *x_hi;
}

// Gaussian falloff exp(-sigma) along a pixel row without an exp per pixel:
// sigma is quadratic in dx, so consecutive ratios G(x+1)/G(x) form a geometric
// sequence: G <- G * r, r <- r * exp(-a). Two exps per row instead of one per
// pixel; forward and backward walk rows identically, so their alpha tests agree
// bit for bit. The conic is positive definite, so sigma >= 0 and G <= 1 up to
// rounding (the 0.999 clamp on alpha absorbs it).
template <typename T>
struct RowFalloff {
  T gauss, ratio, step;
  RowFalloff(const Splat<T>& s, T dx0, T dy, T step_factor)
      : gauss(std::exp(-(T(0.5) * (s.a * dx0 * dx0 + s.c * dy * dy) + s.b * dx0 * dy))),
        ratio(std::exp(-(s.a * (dx0 + T(0.5)) + s.b * dy))),
        step(step_factor) {}
  // Falloff at the current pixel, then moves one pixel right.
  T next() {
    const T g = gauss;
    gauss *= ratio;
    ratio *= step;
    return g;
  }
};

// Largest supported tile (per-worker scratch is one tile of pixels).
constexpr int kMaxTilePixels = 1 << 14;

struct TileRect {
  int x0, y0, x1, y1;  // pixel bounds, half-open, clipped to the image
  int width() const { return x1 - x0; }
  int pixels() const { return (x1 - x0) * (y1 - y0); }
};

// The image cut into tile_w x tile_h tiles, row-major. Tiles are wide rather
// than square: a footprint costs one row segment per tile column it crosses,
// so wide tiles visit fewer rows, while short ones keep the per-tile scratch
// small and give the workers enough tiles to balance.
struct Tiling {
  int width, height, tile_w, tile_h, tiles_x, tiles_y;
  Tiling(int64_t w, int64_t h, int64_t tw, int64_t th)
      : width(static_cast<int>(w)), height(static_cast<int>(h)), tile_w(static_cast<int>(tw)),
        tile_h(static_cast<int>(th)), tiles_x(static_cast<int>((w + tw - 1) / tw)),
        tiles_y(static_cast<int>((h + th - 1) / th)) {
    TORCH_CHECK(w > 0 && h > 0, "image size must be positive, got ", w, "x", h);
    TORCH_CHECK(tw > 0 && th > 0 && tw * th <= kMaxTilePixels, "tile must have 1..", kMaxTilePixels, " pixels");
  }
  int n_tiles() const { return tiles_x * tiles_y; }
  int tile_pixels() const { return tile_w * tile_h; }
  TileRect rect(int t) const {
    const int x0 = (t % tiles_x) * tile_w, y0 = (t / tiles_x) * tile_h;
    return {x0, y0, std::min(x0 + tile_w, width), std::min(y0 + tile_h, height)};
  }
};

// Runs body(slot, tile) over all tiles with dynamic scheduling: tile costs vary
// by orders of magnitude, so static chunks would leave a core idle. `slot` is a
// worker index in [0, n_slots) that owns private scratch memory.
template <typename F>
void for_each_tile(int n_tiles, int n_slots, const F& body) {
  std::atomic<int> next{0};
  at::parallel_for(0, n_slots, 1, [&](int64_t begin, int64_t end) {
    for (int64_t slot = begin; slot < end; ++slot) {
      for (int t = next.fetch_add(1); t < n_tiles; t = next.fetch_add(1)) body(static_cast<int>(slot), t);
    }
  });
}

int worker_slots(int n_tiles) { return std::max(1, std::min(at::get_num_threads(), n_tiles)); }

// Stable LSD radix sort of `order` by unsigned integer keys (8-bit digits,
// passes whose digit is constant are skipped).
template <typename Key>
void radix_sort(std::vector<Key>& keys, std::vector<int32_t>& order) {
  const size_t n = keys.size();
  std::vector<Key> keys_tmp(n);
  std::vector<int32_t> order_tmp(n);
  for (int shift = 0; shift < static_cast<int>(8 * sizeof(Key)); shift += 8) {
    size_t count[257] = {0};
    for (size_t i = 0; i < n; ++i) ++count[((keys[i] >> shift) & 0xFF) + 1];
    bool trivial = false;
    for (int d = 1; d <= 256; ++d) trivial |= count[d] == n;
    if (trivial) continue;
    for (int d = 0; d < 256; ++d) count[d + 1] += count[d];
    for (size_t i = 0; i < n; ++i) {
      const size_t dst = count[(keys[i] >> shift) & 0xFF]++;
      keys_tmp[dst] = keys[i];
      order_tmp[dst] = order[i];
    }
    keys.swap(keys_tmp);
    order.swap(order_tmp);
  }
}

// Positive IEEE floats order like their bit patterns.
inline uint32_t sort_key(float v) { uint32_t k; std::memcpy(&k, &v, 4); return k; }
inline uint64_t sort_key(double v) { uint64_t k; std::memcpy(&k, &v, 8); return k; }

template <typename T>
std::vector<torch::Tensor> bin_tiles_impl(const torch::Tensor& means2d, const torch::Tensor& conics,
                                          const torch::Tensor& opacities, const torch::Tensor& depths,
                                          const torch::Tensor& valid, const Tiling& tiling) {
  const int64_t n = means2d.size(0);
  const int width = tiling.width, height = tiling.height, tiles_x = tiling.tiles_x;
  const int n_tiles = tiling.n_tiles();
  auto int_opts = torch::TensorOptions().dtype(torch::kInt32);
  torch::Tensor bbox = torch::zeros({n, 4}, int_opts);
  torch::Tensor radii = torch::zeros({n, 2}, int_opts);
  const T* m2d = means2d.data_ptr<T>();
  const T* con = conics.data_ptr<T>();
  const T* opa = opacities.data_ptr<T>();
  const bool* ok = valid.data_ptr<bool>();
  int32_t* bb = bbox.data_ptr<int32_t>();
  int32_t* rad = radii.data_ptr<int32_t>();

  // Pixel bounding box of each footprint ellipse (double: the twin does the same).
  at::parallel_for(0, n, kGaussianGrain, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      if (!ok[g]) continue;
      const double op = opa[g];
      if (!(op * 255.0 >= 1.0)) continue;
      const double a = con[3 * g], b = con[3 * g + 1], c = con[3 * g + 2];
      const double det = a * c - b * b;
      if (!(det > 0.0) || !(a > 0.0)) continue;
      const double cut = 2.0 * std::log(255.0 * op) * (1.0 + kCutSlackRel) + kCutSlackAbs;
      const double rx = std::sqrt(cut * c / det), ry = std::sqrt(cut * a / det);
      const double mx = m2d[2 * g], my = m2d[2 * g + 1];
      if (!std::isfinite(mx) || !std::isfinite(my) || !std::isfinite(rx) || !std::isfinite(ry)) continue;
      auto clampi = [](double v, int lo, int hi) {
        return static_cast<int>(std::max<double>(lo, std::min<double>(hi, v)));
      };
      const int x0 = clampi(std::ceil(mx - 0.5 - rx - kPixelSlack), 0, width);
      const int x1 = clampi(std::floor(mx - 0.5 + rx + kPixelSlack) + 1.0, 0, width);
      const int y0 = clampi(std::ceil(my - 0.5 - ry - kPixelSlack), 0, height);
      const int y1 = clampi(std::floor(my - 0.5 + ry + kPixelSlack) + 1.0, 0, height);
      if (x0 >= x1 || y0 >= y1) continue;
      bb[4 * g] = x0; bb[4 * g + 1] = y0; bb[4 * g + 2] = x1; bb[4 * g + 3] = y1;
      rad[2 * g] = std::max(1, static_cast<int>(std::ceil(std::min(rx, kCoordLimit))));
      rad[2 * g + 1] = std::max(1, static_cast<int>(std::ceil(std::min(ry, kCoordLimit))));
    }
  });

  // Visible Gaussians in depth order; ties keep index order (stable), like gsplat.
  const T* dep = depths.data_ptr<T>();
  using Key = decltype(sort_key(T(0)));
  std::vector<int32_t> order;
  std::vector<Key> keys;
  for (int64_t g = 0; g < n; ++g) {
    if (bb[4 * g] < bb[4 * g + 2]) {
      order.push_back(static_cast<int32_t>(g));
      keys.push_back(sort_key(dep[g]));
    }
  }
  radix_sort(keys, order);

  torch::Tensor offsets = torch::zeros({n_tiles + 1}, int_opts);
  int32_t* off = offsets.data_ptr<int32_t>();
  auto tile_range = [&](int32_t g, int* tx0, int* tx1, int* ty0, int* ty1) {
    *tx0 = bb[4 * g] / tiling.tile_w; *tx1 = (bb[4 * g + 2] - 1) / tiling.tile_w + 1;
    *ty0 = bb[4 * g + 1] / tiling.tile_h; *ty1 = (bb[4 * g + 3] - 1) / tiling.tile_h + 1;
  };
  int64_t total = 0;
  for (int32_t g : order) {
    int tx0, tx1, ty0, ty1;
    tile_range(g, &tx0, &tx1, &ty0, &ty1);
    for (int ty = ty0; ty < ty1; ++ty)
      for (int tx = tx0; tx < tx1; ++tx) ++off[ty * tiles_x + tx + 1];
    total += static_cast<int64_t>(tx1 - tx0) * (ty1 - ty0);
  }
  TORCH_CHECK(total < std::numeric_limits<int32_t>::max(), "too many tile intersections: ", total);
  for (int t = 0; t < n_tiles; ++t) off[t + 1] += off[t];
  torch::Tensor ids = torch::empty({total}, int_opts);
  int32_t* id = ids.data_ptr<int32_t>();
  std::vector<int32_t> cursor(off, off + n_tiles);
  for (int32_t g : order) {
    int tx0, tx1, ty0, ty1;
    tile_range(g, &tx0, &tx1, &ty0, &ty1);
    for (int ty = ty0; ty < ty1; ++ty)
      for (int tx = tx0; tx < tx1; ++tx) id[cursor[ty * tiles_x + tx]++] = g;
  }
  return {offsets, ids, bbox, radii};
}

// Channel count known at compile time for the common cases (3: colour, 4:
// colour + depth) so the per-pixel channel loops unroll; kDynamic otherwise.
constexpr int kDynamic = -1;

template <int D>
struct ChannelCount {
  explicit ChannelCount(int64_t) {}
  static constexpr int64_t value() { return D; }
};
template <>
struct ChannelCount<kDynamic> {
  explicit ChannelCount(int64_t n) : n_(n) {}
  int64_t value() const { return n_; }
  int64_t n_;
};

// Calls fn(std::integral_constant<int, D>) with D = n_ch when it is specialised.
template <typename F>
void dispatch_channels(int64_t n_ch, const F& fn) {
  switch (n_ch) {
    case 3: fn(std::integral_constant<int, 3>()); break;
    case 4: fn(std::integral_constant<int, 4>()); break;
    default: fn(std::integral_constant<int, kDynamic>()); break;
  }
}

template <typename T, int D>
void forward_impl(const T* m2d, const T* con, const T* opa, const T* col, int64_t n_ch_runtime,
                  const int32_t* off, const int32_t* ids, const int32_t* bb, const Tiling& tiling,
                  T* out, T* final_t, int32_t* last, int32_t* pix_count, int32_t* gauss_count) {
  const ChannelCount<D> channels(n_ch_runtime);
  const int64_t n_ch = channels.value();
  const int n_tiles = tiling.n_tiles(), n_slots = worker_slots(n_tiles);
  const int tile_px = tiling.tile_pixels(), width = tiling.width;
  const T alpha_min = T(kAlphaMin), alpha_max = T(kAlphaMax), t_min = T(kTransmittanceMin);

  struct Scratch {
    std::vector<T> trans, acc;
    std::vector<int32_t> last, count;
    std::vector<uint8_t> done;
  };
  std::vector<Scratch> scratch(n_slots);
  for (auto& s : scratch) {
    s.trans.resize(tile_px); s.acc.resize(tile_px * std::max<int64_t>(n_ch, 1));
    s.last.resize(tile_px); s.count.resize(tile_px); s.done.resize(tile_px);
  }

  for_each_tile(n_tiles, n_slots, [&](int slot, int t) {
    Scratch& sc = scratch[slot];
    const TileRect r = tiling.rect(t);
    const int n_pix = r.pixels(), tw = r.width();
    std::fill_n(sc.trans.begin(), n_pix, T(1));
    std::fill_n(sc.acc.begin(), n_pix * n_ch, T(0));
    std::fill_n(sc.last.begin(), n_pix, -1);
    std::fill_n(sc.count.begin(), n_pix, 0);
    std::fill_n(sc.done.begin(), n_pix, uint8_t(0));
    T* __restrict trans = sc.trans.data();
    T* __restrict acc = sc.acc.data();
    uint8_t* __restrict done = sc.done.data();
    int n_done = 0;
    for (int p = off[t]; p < off[t + 1] && n_done < n_pix; ++p) {
      const int32_t g = ids[p];
      const Splat<T> s = load_splat(m2d, con, opa, g);
      const int32_t* box = bb + 4 * g;
      const int x_min = std::max(box[0], r.x0), x_max = std::min(box[2], r.x1);
      const int y_lo = std::max(box[1], r.y0), y_hi = std::min(box[3], r.y1);
      const T* __restrict cg = col + g * n_ch;
      int hits = 0;
      for (int py = y_lo; py < y_hi; ++py) {
        const T dy = T(py) + T(0.5) - s.my;
        int x_lo, x_hi;
        if (!row_span(s, dy, x_min, x_max, &x_lo, &x_hi)) continue;
        RowFalloff<T> falloff(s, T(x_lo) + T(0.5) - s.mx, dy, s.step);
        const int i0 = (py - r.y0) * tw + (x_lo - r.x0);
        for (int j = 0; j < x_hi - x_lo; ++j) {
          const int i = i0 + j;
          const T gauss = falloff.next();
          if (done[i]) continue;
          const T alpha = std::min(alpha_max, s.op * gauss);
          if (alpha < alpha_min) continue;
          const T next_t = trans[i] * (T(1) - alpha);
          if (next_t <= t_min) {
            done[i] = 1;
            ++n_done;
            continue;
          }
          const T w = alpha * trans[i];
          T* __restrict ai = acc + i * n_ch;
          for (int64_t k = 0; k < n_ch; ++k) ai[k] += w * cg[k];
          trans[i] = next_t;
          sc.last[i] = p;
          ++sc.count[i];
          ++hits;
        }
      }
      if (hits) __atomic_fetch_add(gauss_count + g, hits, __ATOMIC_RELAXED);
    }
    for (int py = r.y0; py < r.y1; ++py) {
      const int i0 = (py - r.y0) * tw;
      const int64_t o = static_cast<int64_t>(py) * width + r.x0;
      std::copy_n(acc + i0 * n_ch, tw * n_ch, out + o * n_ch);
      std::copy_n(trans + i0, tw, final_t + o);
      std::copy_n(sc.last.data() + i0, tw, last + o);
      std::copy_n(sc.count.data() + i0, tw, pix_count + o);
    }
  });
}

// Per-Gaussian gradient row in the scratch buffers: d/d(mx, my, a, b, c, opacity), then channels.
constexpr int kGradHead = 6;

template <typename T, int D>
void backward_impl(const T* m2d, const T* con, const T* opa, const T* col, int64_t n_ch_runtime,
                   const int32_t* off, const int32_t* ids, const int32_t* bb, const Tiling& tiling,
                   const T* final_t, const int32_t* last, const T* g_out, const T* g_alpha,
                   T* grads, int64_t n_gauss, int n_slots) {
  const ChannelCount<D> channels(n_ch_runtime);
  const int64_t n_ch = channels.value();
  const int n_tiles = tiling.n_tiles(), tile_px = tiling.tile_pixels(), width = tiling.width;
  const int64_t row_len = kGradHead + n_ch;
  const T alpha_min = T(kAlphaMin), alpha_max = T(kAlphaMax);

  // Per pixel: transmittance (walked back from the final one), the upstream
  // gradient of the image, dL/dalpha_out * T_final, and the dot product of the
  // upstream gradient with the colour accumulated behind the current Gaussian
  // (a scalar stands in for the whole `behind` vector since the upstream
  // gradient of a pixel is fixed).
  struct Scratch {
    std::vector<T> trans, g_pix, alpha_term, behind_dot, g_col;
    std::vector<int32_t> last;
  };
  std::vector<Scratch> scratch(n_slots);
  for (auto& s : scratch) {
    const int64_t c = std::max<int64_t>(n_ch, 1);
    s.trans.resize(tile_px); s.g_pix.resize(tile_px * c); s.alpha_term.resize(tile_px);
    s.behind_dot.resize(tile_px); s.g_col.resize(c); s.last.resize(tile_px);
  }

  for_each_tile(n_tiles, n_slots, [&](int slot, int t) {
    Scratch& sc = scratch[slot];
    T* slot_grads = grads + static_cast<int64_t>(slot) * n_gauss * row_len;
    const TileRect r = tiling.rect(t);
    const int n_pix = r.pixels(), tw = r.width();
    for (int py = r.y0; py < r.y1; ++py) {
      const int i0 = (py - r.y0) * tw;
      const int64_t o = static_cast<int64_t>(py) * width + r.x0;
      std::copy_n(final_t + o, tw, sc.trans.data() + i0);
      std::copy_n(last + o, tw, sc.last.data() + i0);
      std::copy_n(g_out + o * n_ch, tw * n_ch, sc.g_pix.data() + i0 * n_ch);
      for (int j = 0; j < tw; ++j) sc.alpha_term[i0 + j] = g_alpha[o + j] * final_t[o + j];
    }
    int max_last = -1;
    for (int i = 0; i < n_pix; ++i) max_last = std::max(max_last, sc.last[i]);
    if (max_last < off[t]) return;
    std::fill_n(sc.behind_dot.begin(), n_pix, T(0));
    T* __restrict trans = sc.trans.data();
    T* __restrict behind_dot = sc.behind_dot.data();
    T* __restrict gc = sc.g_col.data();
    const T* __restrict g_pix = sc.g_pix.data();
    const T* __restrict alpha_term = sc.alpha_term.data();
    const int32_t* __restrict lst = sc.last.data();

    // Back to front, so each pixel's transmittance before a Gaussian is
    // recovered from the one after it.
    for (int p = max_last; p >= off[t]; --p) {
      const int32_t g = ids[p];
      const Splat<T> s = load_splat(m2d, con, opa, g);
      const int32_t* box = bb + 4 * g;
      const int x_min = std::max(box[0], r.x0), x_max = std::min(box[2], r.x1);
      const int y_lo = std::max(box[1], r.y0), y_hi = std::min(box[3], r.y1);
      const T* __restrict cg = col + g * n_ch;
      T g_mx = 0, g_my = 0, g_a = 0, g_b = 0, g_c = 0, g_op = 0;
      std::fill_n(gc, n_ch, T(0));
      bool hit = false;
      for (int py = y_lo; py < y_hi; ++py) {
        const T dy = T(py) + T(0.5) - s.my;
        int x_lo, x_hi;
        if (!row_span(s, dy, x_min, x_max, &x_lo, &x_hi)) continue;
        const int i0 = (py - r.y0) * tw + (x_lo - r.x0);
        const T dx0 = T(x_lo) + T(0.5) - s.mx;
        RowFalloff<T> falloff(s, dx0, dy, s.step);
        // d loss / d sigma summed over the row, times 1, dx and dx^2: the
        // conic and mean gradients are linear in these.
        T row0 = 0, row1 = 0, row2 = 0;
        for (int j = 0; j < x_hi - x_lo; ++j) {
          const int i = i0 + j;
          const T gauss = falloff.next();
          if (p > lst[i]) continue;
          const T raw = s.op * gauss;
          const T alpha = std::min(alpha_max, raw);
          if (alpha < alpha_min) continue;
          hit = true;
          const T inv = T(1) / (T(1) - alpha);
          const T t_before = trans[i] * inv;
          const T w = alpha * t_before;
          const T* __restrict gp = g_pix + i * n_ch;
          T dot = 0;
          for (int64_t k = 0; k < n_ch; ++k) {
            gc[k] += w * gp[k];
            dot += gp[k] * cg[k];
          }
          const T d_alpha = t_before * dot + (alpha_term[i] - behind_dot[i]) * inv;
          behind_dot[i] += w * dot;
          trans[i] = t_before;
          if (raw <= alpha_max) {
            g_op += d_alpha * gauss;
            const T d_sigma = -d_alpha * alpha;
            const T dx = dx0 + T(j);
            row0 += d_sigma;
            row1 += d_sigma * dx;
            row2 += d_sigma * dx * dx;
          }
        }
        g_a += T(0.5) * row2;
        g_b += dy * row1;
        g_c += T(0.5) * dy * dy * row0;
        g_mx -= s.a * row1 + s.b * dy * row0;
        g_my -= s.b * row1 + s.c * dy * row0;
      }
      if (!hit) continue;
      T* gr = slot_grads + static_cast<int64_t>(g) * row_len;
      gr[0] += g_mx; gr[1] += g_my; gr[2] += g_a; gr[3] += g_b; gr[4] += g_c; gr[5] += g_op;
      for (int64_t k = 0; k < n_ch; ++k) gr[kGradHead + k] += gc[k];
    }
  });
}

// ---------------------------------------------------------------------------
// Fused EWA projection (twin: _project_gaussians in _torch_impl.py).

// Camera of the projection: pinhole in the rasteriser convention plus the
// limits of the Jacobian clamp (1.3 x the field of view, as 3DGS/gsplat).
struct Camera {
  double fx, fy, cx, cy, lim_x_neg, lim_x_pos, lim_y_neg, lim_y_pos, near_plane, far_plane, eps2d;
  Camera(double fx_, double fy_, double cx_, double cy_, int64_t width, int64_t height, double near_, double far_,
         double eps)
      : fx(fx_), fy(fy_), cx(cx_), cy(cy_), near_plane(near_), far_plane(far_), eps2d(eps) {
    const double tan_x = 0.5 * width / fx, tan_y = 0.5 * height / fy;
    lim_x_neg = cx / fx + 0.3 * tan_x;
    lim_x_pos = (width - cx) / fx + 0.3 * tan_x;
    lim_y_neg = cy / fy + 0.3 * tan_y;
    lim_y_pos = (height - cy) / fy + 0.3 * tan_y;
  }
};

// Rotation matrix (row-major) of a quaternion (w, x, y, z) normalised to q_hat.
template <typename T>
inline void quat_to_rotation(const T* q, T* q_hat, T* rot, T* inv_norm) {
  const T n = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  *inv_norm = T(1) / std::max(n, T(1e-12));
  for (int k = 0; k < 4; ++k) q_hat[k] = q[k] * *inv_norm;
  const T w = q_hat[0], x = q_hat[1], y = q_hat[2], z = q_hat[3];
  rot[0] = 1 - 2 * (y * y + z * z); rot[1] = 2 * (x * y - w * z);     rot[2] = 2 * (x * z + w * y);
  rot[3] = 2 * (x * y + w * z);     rot[4] = 1 - 2 * (x * x + z * z); rot[5] = 2 * (y * z - w * x);
  rot[6] = 2 * (x * z - w * y);     rot[7] = 2 * (y * z + w * x);     rot[8] = 1 - 2 * (x * x + y * y);
}

// Everything the forward computes for one Gaussian, kept for its backward.
template <typename T>
struct ProjectionState {
  T p[3];          // camera-frame mean
  T inv_z, u, v;   // 1 / z and the normalised image coordinates
  T uc, vc;        // u, v clamped for the Jacobian
  bool u_free, v_free;  // the clamp passes gradients
  T q_hat[4], inv_qnorm;
  T rot[9];        // R(q_hat)
  T rc[9];         // R_cw R(q_hat)
  T scale[3];
  T ru[3], rv[3];  // rows of J R_cw R S
  T a, b, c, det;  // 2D covariance (dilated) and its determinant
  bool valid;
};

template <typename T>
inline void project_one(const T* mean, const T* quat, const T* log_scale, const T* view, const Camera& cam,
                        ProjectionState<T>& s) {
  for (int i = 0; i < 3; ++i)
    s.p[i] = view[4 * i] * mean[0] + view[4 * i + 1] * mean[1] + view[4 * i + 2] * mean[2] + view[4 * i + 3];
  const T z = s.p[2];
  s.valid = z > T(cam.near_plane) && z < T(cam.far_plane) && std::isfinite(s.p[0]) && std::isfinite(s.p[1]);
  if (!s.valid) return;
  s.inv_z = T(1) / z;
  s.u = s.p[0] * s.inv_z;
  s.v = s.p[1] * s.inv_z;
  // Inclusive bounds: torch.clamp passes gradients at the limits too.
  s.u_free = s.u >= T(-cam.lim_x_neg) && s.u <= T(cam.lim_x_pos);
  s.v_free = s.v >= T(-cam.lim_y_neg) && s.v <= T(cam.lim_y_pos);
  s.uc = std::min(std::max(s.u, T(-cam.lim_x_neg)), T(cam.lim_x_pos));
  s.vc = std::min(std::max(s.v, T(-cam.lim_y_neg)), T(cam.lim_y_pos));
  quat_to_rotation(quat, s.q_hat, s.rot, &s.inv_qnorm);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      s.rc[3 * i + j] = view[4 * i] * s.rot[j] + view[4 * i + 1] * s.rot[3 + j] + view[4 * i + 2] * s.rot[6 + j];
  for (int j = 0; j < 3; ++j) s.scale[j] = std::exp(log_scale[j]);
  const T ju = T(cam.fx) * s.inv_z, jv = T(cam.fy) * s.inv_z;
  for (int j = 0; j < 3; ++j) {
    s.ru[j] = ju * (s.rc[j] - s.uc * s.rc[6 + j]) * s.scale[j];
    s.rv[j] = jv * (s.rc[3 + j] - s.vc * s.rc[6 + j]) * s.scale[j];
  }
  s.a = s.ru[0] * s.ru[0] + s.ru[1] * s.ru[1] + s.ru[2] * s.ru[2] + T(cam.eps2d);
  s.b = s.ru[0] * s.rv[0] + s.ru[1] * s.rv[1] + s.ru[2] * s.rv[2];
  s.c = s.rv[0] * s.rv[0] + s.rv[1] * s.rv[1] + s.rv[2] * s.rv[2] + T(cam.eps2d);
  s.det = s.a * s.c - s.b * s.b;
  s.valid = s.det > T(0) && std::isfinite(s.det);
}

template <typename T>
void project_forward_impl(const T* means, const T* quats, const T* log_scales, const T* view, const Camera& cam,
                          int64_t n, T* means2d, T* conics, T* depths, bool* valid) {
  at::parallel_for(0, n, kGaussianGrain, [&](int64_t begin, int64_t end) {
    ProjectionState<T> s;
    for (int64_t g = begin; g < end; ++g) {
      project_one(means + 3 * g, quats + 4 * g, log_scales + 3 * g, view, cam, s);
      depths[g] = s.p[2];
      valid[g] = s.valid;
      if (!s.valid) {
        means2d[2 * g] = means2d[2 * g + 1] = T(0);
        conics[3 * g] = conics[3 * g + 1] = conics[3 * g + 2] = T(0);
        continue;
      }
      means2d[2 * g] = T(cam.fx) * s.u + T(cam.cx);
      means2d[2 * g + 1] = T(cam.fy) * s.v + T(cam.cy);
      const T inv_det = T(1) / s.det;
      conics[3 * g] = s.c * inv_det;
      conics[3 * g + 1] = -s.b * inv_det;
      conics[3 * g + 2] = s.a * inv_det;
    }
  });
}

// Backward of project_one: gradients of one Gaussian's mean, quaternion and
// log-scales, and its contribution to the view matrix gradient (rows 0..2).
template <typename T>
inline void project_one_backward(const T* mean, const ProjectionState<T>& s, const T* view, const Camera& cam,
                                 const T* g_m2d, const T* g_con, T g_depth, T* g_mean, T* g_quat, T* g_log_scale,
                                 double* g_view) {
  T g_p[3] = {0, 0, g_depth};
  if (s.valid) {
    // conic = (c, -b, a) / det
    const T inv_det2 = T(1) / (s.det * s.det);
    const T ga = (-s.c * s.c * g_con[0] + s.b * s.c * g_con[1] - s.b * s.b * g_con[2]) * inv_det2;
    const T gb = (T(2) * s.b * s.c * g_con[0] - (s.a * s.c + s.b * s.b) * g_con[1] + T(2) * s.a * s.b * g_con[2]) *
                 inv_det2;
    const T gc = (-s.b * s.b * g_con[0] + s.a * s.b * g_con[1] - s.a * s.a * g_con[2]) * inv_det2;
    T g_ru[3], g_rv[3];
    for (int j = 0; j < 3; ++j) {
      g_ru[j] = T(2) * ga * s.ru[j] + gb * s.rv[j];
      g_rv[j] = T(2) * gc * s.rv[j] + gb * s.ru[j];
    }
    // ru_j = fx inv_z (rc_0j - uc rc_2j) s_j, rv_j = fy inv_z (rc_1j - vc rc_2j) s_j
    const T ju = T(cam.fx) * s.inv_z, jv = T(cam.fy) * s.inv_z;
    T g_rc[9], g_inv_z = 0, g_uc = 0, g_vc = 0;
    for (int j = 0; j < 3; ++j) {
      const T eu = g_ru[j] * s.scale[j], ev = g_rv[j] * s.scale[j];
      const T du = s.rc[j] - s.uc * s.rc[6 + j], dv = s.rc[3 + j] - s.vc * s.rc[6 + j];
      g_log_scale[j] = (g_ru[j] * s.ru[j] + g_rv[j] * s.rv[j]);  // d/d log s = s d/ds
      g_inv_z += T(cam.fx) * du * eu + T(cam.fy) * dv * ev;
      g_uc -= ju * s.rc[6 + j] * eu;
      g_vc -= jv * s.rc[6 + j] * ev;
      g_rc[j] = ju * eu;
      g_rc[3 + j] = jv * ev;
      g_rc[6 + j] = -ju * s.uc * eu - jv * s.vc * ev;
    }
    // rc = R_cw rot: gradients of R_cw and of rot.
    T g_rot[9];
    for (int i = 0; i < 3; ++i) {
      for (int j = 0; j < 3; ++j) {
        g_view[4 * i + j] += double(g_rc[3 * i] * s.rot[3 * j] + g_rc[3 * i + 1] * s.rot[3 * j + 1] +
                                    g_rc[3 * i + 2] * s.rot[3 * j + 2]);
        g_rot[3 * i + j] = view[i] * g_rc[j] + view[4 + i] * g_rc[3 + j] + view[8 + i] * g_rc[6 + j];
      }
    }
    // rot = R(q_hat), q_hat = q / |q|.
    const T w = s.q_hat[0], x = s.q_hat[1], y = s.q_hat[2], z = s.q_hat[3];
    const T* G = g_rot;
    T gq[4];
    gq[0] = 2 * (-z * G[1] + y * G[2] + z * G[3] - x * G[5] - y * G[6] + x * G[7]);
    gq[1] = 2 * (y * G[1] + z * G[2] + y * G[3] - 2 * x * G[4] - w * G[5] + z * G[6] + w * G[7] - 2 * x * G[8]);
    gq[2] = 2 * (-2 * y * G[0] + x * G[1] + w * G[2] + x * G[3] + z * G[5] - w * G[6] + z * G[7] - 2 * y * G[8]);
    gq[3] = 2 * (-2 * z * G[0] - w * G[1] + x * G[2] + w * G[3] - 2 * z * G[4] + y * G[5] + x * G[6] + y * G[7]);
    const T radial = gq[0] * w + gq[1] * x + gq[2] * y + gq[3] * z;
    for (int k = 0; k < 4; ++k) g_quat[k] = (gq[k] - radial * s.q_hat[k]) * s.inv_qnorm;
    // Jacobian clamp, then the image coordinates.
    T g_u = T(cam.fx) * g_m2d[0] + (s.u_free ? g_uc : T(0));
    T g_v = T(cam.fy) * g_m2d[1] + (s.v_free ? g_vc : T(0));
    g_p[0] += g_u * s.inv_z;
    g_p[1] += g_v * s.inv_z;
    g_inv_z += g_u * s.p[0] + g_v * s.p[1];
    g_p[2] -= g_inv_z * s.inv_z * s.inv_z;
  } else {
    for (int k = 0; k < 4; ++k) g_quat[k] = T(0);
    for (int j = 0; j < 3; ++j) g_log_scale[j] = T(0);
  }
  // p = R_cw mean + t
  for (int j = 0; j < 3; ++j) g_mean[j] = view[j] * g_p[0] + view[4 + j] * g_p[1] + view[8 + j] * g_p[2];
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) g_view[4 * i + j] += double(g_p[i] * mean[j]);
    g_view[4 * i + 3] += double(g_p[i]);
  }
}

// Pose gradients are summed per chunk (fixed chunking: deterministic), then over chunks.
template <typename T>
void project_backward_impl(const T* means, const T* quats, const T* log_scales, const T* view, const Camera& cam,
                           int64_t n, const T* g_m2d, const T* g_con, const T* g_dep, T* g_means, T* g_quats,
                           T* g_log_scales, double* g_view) {
  constexpr int64_t kChunk = 2048;
  const int64_t n_chunks = std::max<int64_t>(1, (n + kChunk - 1) / kChunk);
  std::vector<double> partial(12 * n_chunks, 0.0);
  at::parallel_for(0, n_chunks, kGaussianGrain / kChunk, [&](int64_t first, int64_t last_chunk) {
    ProjectionState<T> s;
    for (int64_t chunk = first; chunk < last_chunk; ++chunk) {
      double* acc = partial.data() + 12 * chunk;
      for (int64_t g = chunk * kChunk; g < std::min(n, (chunk + 1) * kChunk); ++g) {
        project_one(means + 3 * g, quats + 4 * g, log_scales + 3 * g, view, cam, s);
        project_one_backward(means + 3 * g, s, view, cam, g_m2d + 2 * g, g_con + 3 * g, g_dep[g], g_means + 3 * g,
                             g_quats + 4 * g, g_log_scales + 3 * g, acc);
      }
    }
  });
  for (int64_t chunk = 0; chunk < n_chunks; ++chunk)
    for (int k = 0; k < 12; ++k) g_view[k] += partial[12 * chunk + k];
}

void check_input(const torch::Tensor& t, const char* name, int64_t rows, int64_t cols, at::ScalarType dtype) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be on the CPU");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.scalar_type() == dtype, name, " has dtype ", t.scalar_type(), ", expected ", dtype);
  TORCH_CHECK(t.size(0) == rows, name, " has ", t.size(0), " rows, expected ", rows);
  if (cols > 0) TORCH_CHECK(t.dim() == 2 && t.size(1) == cols, name, " must have ", cols, " columns");
}

void check_splats(const torch::Tensor& means2d, const torch::Tensor& conics, const torch::Tensor& opacities) {
  TORCH_CHECK(means2d.dim() == 2, "means2d must be [N, 2]");
  const int64_t n = means2d.size(0);
  const auto dtype = means2d.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, "float32 or float64 expected, got ", dtype);
  check_input(means2d, "means2d", n, 2, dtype);
  check_input(conics, "conics", n, 3, dtype);
  check_input(opacities, "opacities", n, 0, dtype);
}

void check_bins(const torch::Tensor& offsets, const torch::Tensor& ids, const torch::Tensor& bbox, int64_t n,
                const Tiling& tiling) {
  check_input(offsets, "tile_offsets", tiling.n_tiles() + 1, 0, at::kInt);
  check_input(ids, "tile_ids", ids.size(0), 0, at::kInt);
  check_input(bbox, "bbox", n, 4, at::kInt);
}

}  // namespace

// Bins the visible Gaussians into tile_w x tile_h tiles.
// Returns (tile_offsets [n_tiles + 1] int32, tile_ids [n_isect] int32: Gaussian
// indices per tile in depth order, bbox [N, 4] int32: pixel box x0, y0, x1, y1
// (half-open, empty when invisible), radii [N, 2] int32: footprint half-extents,
// 0 when invisible).
std::vector<torch::Tensor> bin_tiles(torch::Tensor means2d, torch::Tensor conics, torch::Tensor opacities,
                                     torch::Tensor depths, torch::Tensor valid, int64_t width, int64_t height,
                                     int64_t tile_w, int64_t tile_h) {
  check_splats(means2d, conics, opacities);
  const int64_t n = means2d.size(0);
  check_input(depths, "depths", n, 0, means2d.scalar_type());
  check_input(valid, "valid", n, 0, at::kBool);
  const Tiling tiling(width, height, tile_w, tile_h);
  return AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "bin_tiles", [&] {
    return bin_tiles_impl<scalar_t>(means2d, conics, opacities, depths, valid, tiling);
  });
}

// Composites `colors` (any number of channels) front to back.
// Returns (image [H, W, D], final transmittance [H, W], last contributor
// [H, W] int32: position in tile_ids, -1 for none, contributors per pixel
// [H, W] int32, pixels per Gaussian [N] int32).
std::vector<torch::Tensor> rasterize_forward(torch::Tensor means2d, torch::Tensor conics, torch::Tensor opacities,
                                             torch::Tensor colors, torch::Tensor tile_offsets, torch::Tensor tile_ids,
                                             torch::Tensor bbox, int64_t width, int64_t height, int64_t tile_w,
                                             int64_t tile_h) {
  check_splats(means2d, conics, opacities);
  const int64_t n = means2d.size(0);
  TORCH_CHECK(colors.dim() == 2, "colors must be [N, D]");
  const int64_t n_ch = colors.size(1);
  check_input(colors, "colors", n, n_ch, means2d.scalar_type());
  const Tiling tiling(width, height, tile_w, tile_h);
  check_bins(tile_offsets, tile_ids, bbox, n, tiling);
  auto opts = means2d.options();
  auto int_opts = torch::TensorOptions().dtype(torch::kInt32);
  torch::Tensor image = torch::empty({height, width, n_ch}, opts);
  torch::Tensor final_t = torch::empty({height, width}, opts);
  torch::Tensor last = torch::empty({height, width}, int_opts);
  torch::Tensor pix_count = torch::empty({height, width}, int_opts);
  torch::Tensor gauss_count = torch::zeros({n}, int_opts);
  AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "rasterize_forward", [&] {
    dispatch_channels(n_ch, [&](auto d) {
      forward_impl<scalar_t, decltype(d)::value>(
          means2d.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(), opacities.data_ptr<scalar_t>(),
          colors.data_ptr<scalar_t>(), n_ch, tile_offsets.data_ptr<int32_t>(), tile_ids.data_ptr<int32_t>(),
          bbox.data_ptr<int32_t>(), tiling, image.data_ptr<scalar_t>(), final_t.data_ptr<scalar_t>(),
          last.data_ptr<int32_t>(), pix_count.data_ptr<int32_t>(), gauss_count.data_ptr<int32_t>());
    });
  });
  return {image, final_t, last, pix_count, gauss_count};
}

// Gradients of the loss w.r.t. (means2d [N, 2], conics [N, 3], opacities [N],
// colors [N, D]) given its gradients w.r.t. the image [H, W, D] and the alpha
// (1 - final transmittance) [H, W].
std::vector<torch::Tensor> rasterize_backward(torch::Tensor means2d, torch::Tensor conics, torch::Tensor opacities,
                                              torch::Tensor colors, torch::Tensor tile_offsets,
                                              torch::Tensor tile_ids, torch::Tensor bbox, torch::Tensor final_t,
                                              torch::Tensor last, torch::Tensor grad_image,
                                              torch::Tensor grad_alpha, int64_t width, int64_t height,
                                              int64_t tile_w, int64_t tile_h) {
  check_splats(means2d, conics, opacities);
  const int64_t n = means2d.size(0);
  TORCH_CHECK(colors.dim() == 2, "colors must be [N, D]");
  const int64_t n_ch = colors.size(1);
  check_input(colors, "colors", n, n_ch, means2d.scalar_type());
  const Tiling tiling(width, height, tile_w, tile_h);
  check_bins(tile_offsets, tile_ids, bbox, n, tiling);
  check_input(final_t, "final_t", height, width, means2d.scalar_type());
  check_input(last, "last", height, width, at::kInt);
  check_input(grad_alpha, "grad_alpha", height, width, means2d.scalar_type());
  TORCH_CHECK(grad_image.is_contiguous() && grad_image.dim() == 3 && grad_image.size(0) == height &&
                  grad_image.size(1) == width && grad_image.size(2) == n_ch &&
                  grad_image.scalar_type() == means2d.scalar_type(),
              "grad_image must be a contiguous [H, W, D] tensor of the input dtype");
  const int n_slots = worker_slots(tiling.n_tiles());
  // One gradient buffer per worker: tiles on different workers share Gaussians.
  torch::Tensor grads = torch::zeros({n_slots, n, kGradHead + n_ch}, means2d.options());
  AT_DISPATCH_FLOATING_TYPES(means2d.scalar_type(), "rasterize_backward", [&] {
    dispatch_channels(n_ch, [&](auto d) {
      backward_impl<scalar_t, decltype(d)::value>(
          means2d.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(), opacities.data_ptr<scalar_t>(),
          colors.data_ptr<scalar_t>(), n_ch, tile_offsets.data_ptr<int32_t>(), tile_ids.data_ptr<int32_t>(),
          bbox.data_ptr<int32_t>(), tiling, final_t.data_ptr<scalar_t>(), last.data_ptr<int32_t>(),
          grad_image.data_ptr<scalar_t>(), grad_alpha.data_ptr<scalar_t>(), grads.data_ptr<scalar_t>(), n,
          n_slots);
    });
  });
  torch::Tensor total = n_slots == 1 ? grads[0] : grads.sum(0);
  return {total.slice(1, 0, 2).contiguous(), total.slice(1, 2, 5).contiguous(), total.select(1, 5).contiguous(),
          total.slice(1, kGradHead, kGradHead + n_ch).contiguous()};
}

// Projects Gaussians (means [N, 3], quats [N, 4] (w, x, y, z), log_scales
// [N, 3]) through the world-to-camera `viewmat` [4, 4] into a pinhole camera
// (rasteriser convention). Returns (means2d [N, 2], conics [N, 3], depths [N],
// valid [N] bool); invalid rows hold zeros.
std::vector<torch::Tensor> project_forward(torch::Tensor means, torch::Tensor quats, torch::Tensor log_scales,
                                           torch::Tensor viewmat, double fx, double fy, double cx, double cy,
                                           int64_t width, int64_t height, double near_plane, double far_plane,
                                           double eps2d) {
  const int64_t n = means.size(0);
  const auto dtype = means.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, "float32 or float64 expected, got ", dtype);
  check_input(means, "means", n, 3, dtype);
  check_input(quats, "quats", n, 4, dtype);
  check_input(log_scales, "log_scales", n, 3, dtype);
  check_input(viewmat, "viewmat", 4, 4, dtype);
  const Camera cam(fx, fy, cx, cy, width, height, near_plane, far_plane, eps2d);
  torch::Tensor means2d = torch::empty({n, 2}, means.options());
  torch::Tensor conics = torch::empty({n, 3}, means.options());
  torch::Tensor depths = torch::empty({n}, means.options());
  torch::Tensor valid = torch::empty({n}, means.options().dtype(torch::kBool));
  AT_DISPATCH_FLOATING_TYPES(dtype, "project_forward", [&] {
    project_forward_impl<scalar_t>(means.data_ptr<scalar_t>(), quats.data_ptr<scalar_t>(),
                                   log_scales.data_ptr<scalar_t>(), viewmat.data_ptr<scalar_t>(), cam, n,
                                   means2d.data_ptr<scalar_t>(), conics.data_ptr<scalar_t>(),
                                   depths.data_ptr<scalar_t>(), valid.data_ptr<bool>());
  });
  return {means2d, conics, depths, valid};
}

// Gradients of the loss w.r.t. (means, quats, log_scales, viewmat) given its
// gradients w.r.t. project_forward's (means2d, conics, depths).
std::vector<torch::Tensor> project_backward(torch::Tensor means, torch::Tensor quats, torch::Tensor log_scales,
                                            torch::Tensor viewmat, double fx, double fy, double cx, double cy,
                                            int64_t width, int64_t height, double near_plane, double far_plane,
                                            double eps2d, torch::Tensor grad_means2d, torch::Tensor grad_conics,
                                            torch::Tensor grad_depths) {
  const int64_t n = means.size(0);
  const auto dtype = means.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, "float32 or float64 expected, got ", dtype);
  check_input(means, "means", n, 3, dtype);
  check_input(quats, "quats", n, 4, dtype);
  check_input(log_scales, "log_scales", n, 3, dtype);
  check_input(viewmat, "viewmat", 4, 4, dtype);
  check_input(grad_means2d, "grad_means2d", n, 2, dtype);
  check_input(grad_conics, "grad_conics", n, 3, dtype);
  check_input(grad_depths, "grad_depths", n, 0, dtype);
  const Camera cam(fx, fy, cx, cy, width, height, near_plane, far_plane, eps2d);
  torch::Tensor g_means = torch::empty({n, 3}, means.options());
  torch::Tensor g_quats = torch::empty({n, 4}, means.options());
  torch::Tensor g_log_scales = torch::empty({n, 3}, means.options());
  torch::Tensor g_view = torch::zeros({4, 4}, means.options().dtype(torch::kDouble));
  AT_DISPATCH_FLOATING_TYPES(dtype, "project_backward", [&] {
    project_backward_impl<scalar_t>(means.data_ptr<scalar_t>(), quats.data_ptr<scalar_t>(),
                                    log_scales.data_ptr<scalar_t>(), viewmat.data_ptr<scalar_t>(), cam, n,
                                    grad_means2d.data_ptr<scalar_t>(), grad_conics.data_ptr<scalar_t>(),
                                    grad_depths.data_ptr<scalar_t>(), g_means.data_ptr<scalar_t>(),
                                    g_quats.data_ptr<scalar_t>(), g_log_scales.data_ptr<scalar_t>(),
                                    g_view.data_ptr<double>());
  });
  return {g_means, g_quats, g_log_scales, g_view.to(dtype)};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "gs4_slam CPU Gaussian rendering kernels";
  // The GIL is released while a kernel runs, so tracking and mapping threads render concurrently.
  using release = py::call_guard<py::gil_scoped_release>;
  m.def("project_forward", &project_forward, "Fused EWA projection of 3D Gaussians", release());
  m.def("project_backward", &project_backward, "Backward of project_forward, including the view matrix", release());
  m.def("bin_tiles", &bin_tiles, "Bin visible Gaussians into depth-sorted tile lists", release());
  m.def("rasterize_forward", &rasterize_forward, "Front-to-back compositing of N-channel Gaussians", release());
  m.def("rasterize_backward", &rasterize_backward, "Backward of rasterize_forward", release());
}
