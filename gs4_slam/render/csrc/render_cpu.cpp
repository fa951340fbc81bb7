// CPU kernels of the Gaussian rasteriser: tile binning, front-to-back
// compositing and its backward pass. The PyTorch twins in
// gs4_slam/render/_torch_impl.py (_bin_tiles, _rasterize_to_pixels) define the
// semantics; tests hold the two to each other and to gsplat's reference.
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
  at::parallel_for(0, n, 2048, [&](int64_t begin, int64_t end) {
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

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "gs4_slam CPU Gaussian rasterisation kernels";
  m.def("bin_tiles", &bin_tiles, "Bin visible Gaussians into depth-sorted tile lists");
  m.def("rasterize_forward", &rasterize_forward, "Front-to-back compositing of N-channel Gaussians");
  m.def("rasterize_backward", &rasterize_backward, "Backward of rasterize_forward");
}
