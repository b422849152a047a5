// jaxgmm's fused pass for XLA's CPU backend: the E-step of one block of rows and
// its sufficient statistics in one loop over the rows, for one or more fits.
//
// For each fit f and row i, with phi = [1, x_i - c, q(x_i - c)] (q by `mode`: the
// squares, the squared norm, or the upper triangle of the outer product, row by row;
// none where the quadratic form is shared, 'tied'):
//   L = phi @ a[f]                      (n_phi x k: the fast form of the log-joint;
//                                        shared: plus -|(x_i - c) @ u[f]|^2 / 2)
//   r = exp(L - max L) / sum exp(...)   (responsibilities; max taken as 0 if not finite)
//   s[f] += w_i * r (x) phi             (n_phi x k, the layout of a)
//   ll[f] += w_i * (max L + log sum exp(L - max L))
//   shared: pooled[f] += (sum_k w_i r_ik) triu((x_i - c)(x_i - c)^T)
// exactly what jaxgmm's XLA pass computes (`_em.pass_stats`), in another order of
// summation. Built by jaxgmm on first use (`_kernels.py`) with -march=native.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <initializer_list>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define JAXGMM_X86 1
#endif

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int kBytes = 64;  // one vector register's worth of lanes (AVX-512, or two AVX2)

template <typename T>
struct Vec {
  static constexpr int N = kBytes / sizeof(T);
  typedef T type __attribute__((vector_size(kBytes)));
};
template <typename T>
using V = typename Vec<T>::type;
template <typename T>
struct VecI;
template <>
struct VecI<double> {
  typedef int64_t type __attribute__((vector_size(kBytes)));
};
template <>
struct VecI<float> {
  typedef int32_t type __attribute__((vector_size(kBytes)));
};
template <typename T>
using VI = typename VecI<T>::type;

template <typename T>
inline V<T> load(const T* p) {
  V<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <typename T>
inline void store(T* p, V<T> v) {
  std::memcpy(p, &v, sizeof(v));
}
template <typename T>
inline V<T> splat(T a) {
  return a - V<T>{};  // a broadcast (a - 0 is a for every a; 0 + a is not, for -0)
}

// Horizontal sum and maximum, pairwise (depth log2 N, not N).
template <typename T>
inline T hsum(V<T> v) {
  constexpr int N = Vec<T>::N;
  T a[N];
  std::memcpy(a, &v, sizeof(a));
  for (int w = N / 2; w >= 1; w /= 2)
    for (int i = 0; i < w; ++i) a[i] += a[i + w];
  return a[0];
}
template <typename T>
inline T hmax(V<T> v) {
  constexpr int N = Vec<T>::N;
  T a[N];
  std::memcpy(a, &v, sizeof(a));
  for (int w = N / 2; w >= 1; w /= 2)
    for (int i = 0; i < w; ++i) a[i] = a[i] < a[i + w] ? a[i + w] : a[i];
  return a[0];
}

// exp(x) for x <= 0 (L - max): Cody-Waite reduction, a Taylor polynomial, and the
// power of two as two factors so that results down to the smallest subnormal stay
// right. exp(-inf) = 0, NaN stays NaN.
// 1/k! and 1/(2n + 1): the polynomials' coefficients (exp's Taylor series, and
// 2 atanh's series for log), rounded to each type where they are used.
constexpr double kInverseFactorial[14] = {
    1.0,           1.0,            1.0 / 2,         1.0 / 6,          1.0 / 24,
    1.0 / 120,     1.0 / 720,      1.0 / 5040,      1.0 / 40320,      1.0 / 362880,
    1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800.0};
constexpr double kInverseOdd[11] = {1.0,      1.0 / 3,  1.0 / 5,  1.0 / 7,  1.0 / 9, 1.0 / 11,
                                    1.0 / 13, 1.0 / 15, 1.0 / 17, 1.0 / 19, 1.0 / 21};

// Per type: the Cody-Waite split of ln 2, exp's range (0 below `lowest`, inf above
// `highest`) and the polynomials' lengths; the bit layout comes from numeric_limits.
template <typename T>
struct Consts;
template <>
struct Consts<double> {
  static constexpr double ln2_hi = 6.93147180369123816490e-01;
  static constexpr double ln2_lo = 1.90821492927058770002e-10;
  static constexpr double lowest = -745.2, highest = 709.78;
  static constexpr int degree = 13, terms = 11;  // exp's Taylor degree, log's series terms
};
template <>
struct Consts<float> {
  static constexpr float ln2_hi = 6.93145752e-01f;
  static constexpr float ln2_lo = 1.42860677e-06f;
  static constexpr float lowest = -104.0f, highest = 88.72f;
  static constexpr int degree = 8, terms = 6;
};
template <typename T>
struct Bits {
  using I = std::conditional_t<sizeof(T) == 8, int64_t, int32_t>;
  static constexpr int mantissa = std::numeric_limits<T>::digits - 1;
  static constexpr int bias = std::numeric_limits<T>::max_exponent - 1;
  static constexpr I one = I(bias) << mantissa;  // the bits of 1.0
  static constexpr I mant = (I(1) << mantissa) - 1;
  static constexpr T shifter = T(1.5) * T(I(1) << mantissa);  // adding it rounds to integer
  static constexpr T log2e = T(1.44269504088896340736);
};

// G vectors at once, in place, each step over all G: G independent chains in flight
// (one vector's 13-step Horner chain alone waits on each FMA's latency).
template <typename T, int G>
inline void vexp(V<T>* __restrict v) {
  using C = Consts<T>;
  using B = Bits<T>;
  V<T> r[G], p[G], s1[G], s2[G];
  for (int g = 0; g < G; ++g) {
    V<T> x = v[g];
    V<T> xc = x < splat<T>(C::lowest) ? splat<T>(C::lowest) : x;  // NaN passes through
    V<T> n = (xc * B::log2e + B::shifter) - B::shifter;             // round(x / ln 2)
    r[g] = (xc - n * C::ln2_hi) - n * C::ln2_lo;
    VI<T> ni = __builtin_convertvector(n, VI<T>);
    VI<T> half = ni >> 1;
    VI<T> e1 = (half + B::bias) << B::mantissa;
    VI<T> e2 = (ni - half + B::bias) << B::mantissa;
    std::memcpy(&s1[g], &e1, sizeof(V<T>));
    std::memcpy(&s2[g], &e2, sizeof(V<T>));
    p[g] = splat<T>(T(kInverseFactorial[C::degree]));
  }
  // Taylor coefficients 1/k!, Horner
  for (int k = C::degree - 1; k >= 0; --k)
    for (int g = 0; g < G; ++g) p[g] = p[g] * r[g] + T(kInverseFactorial[k]);
  for (int g = 0; g < G; ++g) {
    V<T> y = p[g] * s1[g] * s2[g];
    y = v[g] < splat<T>(C::lowest) ? splat<T>(T(0)) : y;
    // above the largest finite result (x > 0 only where a row's maximum was not
    // finite and taken as 0): inf, as XLA's exp, not an overflowed exponent field
    v[g] = v[g] > splat<T>(C::highest) ? splat<T>(std::numeric_limits<T>::infinity()) : y;
  }
}

// log(x) for positive normal x (the totals, >= 1 unless every component is -inf;
// the caller takes std::log for any lane that is not): x = 2^e m, m in
// [sqrt(1/2), sqrt(2)), log m = 2 atanh(f), f = (m - 1) / (m + 1).
template <typename T>
inline V<T> vlog(V<T> x) {
  using C = Consts<T>;
  using B = Bits<T>;
  VI<T> bits;
  std::memcpy(&bits, &x, sizeof(bits));
  VI<T> e = (bits >> B::mantissa) - (B::one >> B::mantissa);
  VI<T> mbits = (bits & B::mant) | B::one;
  V<T> m;
  std::memcpy(&m, &mbits, sizeof(m));
  const T sqrt2 = T(1.41421356237309504880);
  auto big = m > sqrt2;
  m = big ? m * T(0.5) : m;
  e = big ? e + 1 : e;
  V<T> f = (m - T(1)) / (m + T(1));
  V<T> s2 = f * f;
  // 1/(2n+1), n = terms-1..0, Horner in s2
  V<T> p = splat<T>(T(kInverseOdd[C::terms - 1]));
  for (int n = C::terms - 2; n >= 0; --n) p = p * s2 + T(kInverseOdd[n]);
  V<T> ef = __builtin_convertvector(e, V<T>);
  return ef * C::ln2_hi + (T(2) * f * p + ef * C::ln2_lo);
}

// The features phi(x - c) of one row: [1, xc, q(xc)], q by mode ([1, xc] where the
// quadratic form is shared).
enum Mode : int32_t { kSquares = 0, kNorm = 1, kTriangle = 2, kShared = 3 };

// R rows as one vector (R lanes): a feature of R rows side by side.
template <typename T, int R>
struct Across {
  typedef T type __attribute__((vector_size(R * sizeof(T))));
};

#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define JAXGMM_SHUFFLE 1
#endif
#endif

// Columns j0..j0+7 of 8 rows (x: 8 x d) as 8 vectors of the rows side by side, minus
// c: an 8 x 8 transpose in registers (three rounds of interleaving), where gathering
// each vector's lanes one by one took 8 inserts.
template <typename T>
inline void columns_of_8(const T* __restrict x, int d, int j0, const T* __restrict c,
                         typename Across<T, 8>::type* __restrict out) {
  using A = typename Across<T, 8>::type;
#ifdef JAXGMM_SHUFFLE
  A v[8], s[8];
  for (int r = 0; r < 8; ++r) std::memcpy(&v[r], x + int64_t(r) * d + j0, sizeof(A));
  for (int p = 0; p < 8; p += 2) {
    s[p] = __builtin_shufflevector(v[p], v[p + 1], 0, 8, 2, 10, 4, 12, 6, 14);
    s[p + 1] = __builtin_shufflevector(v[p], v[p + 1], 1, 9, 3, 11, 5, 13, 7, 15);
  }
  for (int p : {0, 1, 4, 5}) {
    v[p] = __builtin_shufflevector(s[p], s[p + 2], 0, 1, 8, 9, 4, 5, 12, 13);
    v[p + 2] = __builtin_shufflevector(s[p], s[p + 2], 2, 3, 10, 11, 6, 7, 14, 15);
  }
  for (int p = 0; p < 4; ++p) {
    out[p] = __builtin_shufflevector(v[p], v[p + 4], 0, 1, 2, 3, 8, 9, 10, 11) - c[j0 + p];
    out[p + 4] = __builtin_shufflevector(v[p], v[p + 4], 4, 5, 6, 7, 12, 13, 14, 15) - c[j0 + p + 4];
  }
#else
  for (int j = 0; j < 8; ++j) {
    for (int r = 0; r < 8; ++r) out[j][r] = x[int64_t(r) * d + j0 + j];
    out[j] -= c[j0 + j];
  }
#endif
}

// The features of R rows (x: R x d), feature-major: phi[j * R + r] is row r's feature
// j (R = 1: the row's features in order), in the same order of operations for any R.
// Side by side, a quadratic feature of all R rows is one product of two whole
// vectors; row by row, the triangle was products of unaligned parts of a row's xc,
// reloaded from the stores that had just written it (5% of the reference shape's
// pass, measured single-threaded).
template <typename T, int R>
inline void features(const T* __restrict x, const T* __restrict c, int d, int mode,
                     T* __restrict phi) {
  using A = typename Across<T, R>::type;
  auto at = [&](int j) {
    A v;
    std::memcpy(&v, phi + int64_t(j) * R, sizeof(v));
    return v;
  };
  auto put = [&](int64_t j, A v) { std::memcpy(phi + j * R, &v, sizeof(v)); };
  put(0, T(1) - A{});
  int j = 0;
  if constexpr (R == 8) {
    for (; j + 8 <= d; j += 8) {
      A cols[8];
      columns_of_8<T>(x, d, j, c, cols);
      for (int q = 0; q < 8; ++q) put(1 + j + q, cols[q]);
    }
  }
  for (; j < d; ++j) {
    A v;
    for (int r = 0; r < R; ++r) v[r] = x[int64_t(r) * d + j];
    put(1 + j, v - c[j]);
  }
  int64_t q = 1 + d;
  if (mode == kSquares) {
    for (int j = 0; j < d; ++j) put(q + j, at(1 + j) * at(1 + j));
  } else if (mode == kNorm) {
    A acc = A{};
    for (int j = 0; j < d; ++j) acc += at(1 + j) * at(1 + j);
    put(q, acc);
  } else if (mode == kTriangle) {
    for (int i = 0; i < d; ++i) {
      A xi = at(1 + i);
      for (int j = i; j < d; ++j) put(q++, xi * at(1 + j));
    }
  }
}

// R rows' log-joints L (R x k, k a multiple of N) into their weighted
// responsibilities w_i r_ik in place; returns sum_i w_i log sum_k exp(L_ik) (as XLA's
// _normalise: the maximum taken as 0 where it is not finite).
template <typename T, int R>
T normalise(T* __restrict L, int k, const T* __restrict w) {
  constexpr int N = Vec<T>::N;
  T tops[N], totals[N];
  for (int j = 0; j < N; ++j) tops[j] = 0, totals[j] = 1;
  T ll = 0;
  static_assert(R <= N, "one vector of totals");
  for (int r = 0; r < R; ++r) {
    T* Lr = L + r * k;
    V<T> m = load(Lr);
    for (int kc = N; kc < k; kc += N) {
      V<T> v = load(Lr + kc);
      m = m < v ? v : m;
    }
    T top = hmax<T>(m);  // a NaN in L may be skipped here; it reaches the sums below
    tops[r] = std::isfinite(top) ? top : T(0);
  }
  // exp(L - top) of all R rows, G vectors at a time
  constexpr int G = 8;
  V<T> e[G];
  T* at[G];
  int n = 0;
  auto flush = [&] {
    for (int g = n; g < G; ++g) e[g] = V<T>{};  // unused: computed, not stored
    vexp<T, G>(e);
    for (int g = 0; g < n; ++g) store(at[g], e[g]);
    n = 0;
  };
  for (int r = 0; r < R; ++r)
    for (int kc = 0; kc < k; kc += N) {
      at[n] = L + r * k + kc;
      e[n] = load(at[n]) - tops[r];
      if (++n == G) flush();
    }
  if (n > 0) flush();
  for (int r = 0; r < R; ++r) {
    V<T> tot = V<T>{};
    for (int kc = 0; kc < k; kc += N) tot += load(L + r * k + kc);
    totals[r] = hsum<T>(tot);
  }
  T ws[N] = {}, scales[N];
  for (int r = 0; r < R; ++r) ws[r] = w[r];
  // as XLA's (1 / total) * w; the lanes past R have total 1 and weight 0
  store(scales, (T(1) / load(totals)) * load(ws));
  for (int r = 0; r < R; ++r) {
    T* Lr = L + r * k;
    for (int kc = 0; kc < k; kc += N) store(Lr + kc, load(Lr + kc) * scales[r]);
  }
  V<T> tv = load(totals);
  bool normal = true;
  for (int r = 0; r < R; ++r)
    normal &= totals[r] >= T(1) && totals[r] <= std::numeric_limits<T>::max();
  V<T> logs = normal ? vlog<T>(tv) : V<T>{};
  for (int r = 0; r < R; ++r) {
    T lg = normal ? logs[r] : std::log(totals[r]);
    ll += w[r] * (tops[r] + lg);
  }
  return ll;
}

// |y_r|^2 per lane, y_r = e_r @ u, for R rows e_r (d values, `stride` apart) and a
// factor u (d x dp, columns past d zero; rows below the diagonal skipped where
// `upper`): sq[r], to be summed across lanes.
template <typename T, int R>
// (always inlined: as a call, the centred kernel's D=64 pass ran 10% slower)
__attribute__((always_inline)) inline void squared_norms(const T* __restrict e, int stride,
                                                         const T* __restrict u, int d, int dp,
                                                         bool upper, V<T>* __restrict sq) {
  constexpr int N = Vec<T>::N;
  for (int r = 0; r < R; ++r) sq[r] = V<T>{};
  for (int jc = 0; jc < dp; jc += N) {
    V<T> acc[R];
    for (int r = 0; r < R; ++r) acc[r] = V<T>{};
    const int rows_of_u = upper ? std::min(d, jc + N) : d;
    for (int j = 0; j < rows_of_u; ++j) {
      V<T> uj = load(u + int64_t(j) * dp + jc);
      for (int r = 0; r < R; ++r) acc[r] += splat<T>(e[r * stride + j]) * uj;
    }
    for (int r = 0; r < R; ++r) sq[r] += acc[r] * acc[r];
  }
}

// One fit over rows [begin, end): adds sum_i w_i r_ik phi_ij to s (n_phi x k, the
// layout of a), and returns sum_i w_i log sum_k exp(L_ik), L = phi @ a. Where the
// quadratic form is shared (kShared), u is its factor (d x dp, zero columns past d),
// and the rows' pooled second moments follow s (d x dp, the upper triangle read).
template <typename T, int R>
struct Pass {
  const T *x, *w, *c, *a, *u;
  int d, n_phi, k, mode, dp;
  bool upper;  // u is upper triangular: its zeros are skipped

  // Each row's -|xc @ u|^2 / 2, added to all its components' log-joints (xc: the
  // rows' x - c, row by row, dp apart).
  void add_shared_quadratic(const T* __restrict xc, T* __restrict L) const {
    constexpr int N = Vec<T>::N;
    V<T> sq[R];
    squared_norms<T, R>(xc, dp, u, d, dp, upper, sq);
    for (int r = 0; r < R; ++r) {
      V<T> q = splat<T>(T(-0.5) * hsum<T>(sq[r]));
      for (int kc = 0; kc < k; kc += N) store(L + r * k + kc, load(L + r * k + kc) + q);
    }
  }

  // pooled += sum_r (sum_k resp_rk) triu(xc_r xc_r^T), from the weighted responsibilities.
  void add_pooled(const T* __restrict xc, const T* __restrict L, T* __restrict pooled) const {
    constexpr int N = Vec<T>::N;
    T total[R];
    for (int r = 0; r < R; ++r) {
      V<T> t = V<T>{};
      for (int kc = 0; kc < k; kc += N) t += load(L + r * k + kc);
      total[r] = hsum<T>(t);
    }
    // lanes past d read the row's padding (xc rows are dp apart): they only reach
    // columns past d, which are never read
    for (int jc = 0; jc < dp; jc += N) {
      V<T> e[R];
      for (int r = 0; r < R; ++r) e[r] = load(xc + r * dp + jc);
      for (int a = 0; a < std::min(d, jc + N); ++a) {
        T* at = pooled + int64_t(a) * dp + jc;
        V<T> acc = load(at);
        for (int r = 0; r < R; ++r) acc += splat<T>(total[r] * xc[r * dp + a]) * e[r];
        store(at, acc);
      }
    }
  }

  // R rows: their features phi (feature-major), log-joints L (R x k), then
  // responsibilities in place; xc: room for the rows' x - c row by row (R x dp).
  T rows(int64_t i, T* __restrict phi, T* __restrict L, T* __restrict s,
         T* __restrict xc) const {
    constexpr int N = Vec<T>::N;
    features<T, R>(x + i * d, c, d, mode, phi);
    for (int kc = 0; kc < k; kc += 2 * N) {
      const bool two = kc + N < k;
      V<T> acc0[R], acc1[R];
      for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = V<T>{};
      if (two) {
        for (int j = 0; j < n_phi; ++j) {
          const T* aj = a + int64_t(j) * k + kc;
          V<T> a0 = load(aj), a1 = load(aj + N);
          for (int r = 0; r < R; ++r) {
            V<T> p = splat<T>(phi[j * R + r]);
            acc0[r] += p * a0;
            acc1[r] += p * a1;
          }
        }
      } else {
        for (int j = 0; j < n_phi; ++j) {
          V<T> a0 = load(a + int64_t(j) * k + kc);
          for (int r = 0; r < R; ++r) acc0[r] += splat<T>(phi[j * R + r]) * a0;
        }
      }
      for (int r = 0; r < R; ++r) {
        store(L + r * k + kc, acc0[r]);
        if (two) store(L + r * k + kc + N, acc1[r]);
      }
    }
    if (mode == kShared) {  // row by row, as the products over columns need them
      for (int r = 0; r < R; ++r)
        for (int j = 0; j < d; ++j) xc[r * dp + j] = x[(i + r) * d + j] - c[j];
      add_shared_quadratic(xc, L);
    }
    T ll = normalise<T, R>(L, k, w + i);
    if (mode == kShared) add_pooled(xc, L, s + int64_t(n_phi) * k);
    for (int kc = 0; kc < k; kc += N) {
      V<T> lr[R];
      for (int r = 0; r < R; ++r) lr[r] = load(L + r * k + kc);
      T* sk = s + kc;
      for (int j = 0; j < n_phi; ++j) {
        V<T> acc = load(sk + int64_t(j) * k);
        for (int r = 0; r < R; ++r) acc += splat<T>(phi[j * R + r]) * lr[r];
        store(sk + int64_t(j) * k, acc);
      }
    }
    return ll;
  }
};

template <typename T>
T pass_rows(const Pass<T, 8>& many, int64_t begin, int64_t end, T* s) {
  constexpr int R = 8;
  std::vector<T> phi(R * many.n_phi), L(R * many.k);
  std::vector<T> xc(R * many.dp + Vec<T>::N);
  T ll = 0;
  int64_t i = begin;
  for (; i + R <= end; i += R) ll += many.rows(i, phi.data(), L.data(), s, xc.data());
  Pass<T, 1> one{many.x, many.w, many.c, many.a, many.u,
                 many.d, many.n_phi, many.k, many.mode, many.dp, many.upper};
  for (; i < end; ++i) ll += one.rows(i, phi.data(), L.data(), s, xc.data());
  return ll;
}

// The centred (direct) form, for wide data whose features would outgrow the rows:
// for each row i and component c, with y = (x_i - mu_c) @ U_c (U_c: c's precision
// Cholesky factor, its columns padded with zeros to dp, a multiple of N),
//   L_ic = cst_c - |y|^2 / 2, and r as in the fast form; then about shift_c,
//   sr[c] += w_i r_ic,  sx[c] += w_i r_ic e,  sxx[c] += w_i r_ic e e^T  (e = x_i - shift_c;
//   sxx: d x dp, of which the upper triangle is read).
template <typename T, int R>
struct DirectPass {
  const T *x, *w, *mu, *u, *cst, *shift;
  int d, dp, k, kp;
  const bool* upper;  // per component: U_c is upper triangular (skip its zeros)

  T rows(int64_t i, T* __restrict diff, T* __restrict coef, T* __restrict L,
         T* __restrict sr, T* __restrict sx, T* __restrict sxx) const {
    constexpr int N = Vec<T>::N;
    for (int r = 0; r < R; ++r)  // padding components: never any responsibility
      for (int c = k; c < kp; ++c) L[r * kp + c] = -std::numeric_limits<T>::infinity();
    for (int c = 0; c < k; ++c) {
      const T* m = mu + int64_t(c) * d;
      for (int r = 0; r < R; ++r)
        for (int j = 0; j < d; ++j) diff[r * dp + j] = x[(i + r) * d + j] - m[j];
      V<T> sq[R];
      squared_norms<T, R>(diff, dp, u + int64_t(c) * d * dp, d, dp, upper[c], sq);
      for (int r = 0; r < R; ++r) L[r * kp + c] = cst[c] - T(0.5) * hsum<T>(sq[r]);
    }
    T ll = normalise<T, R>(L, kp, w + i);
    for (int c = 0; c < k; ++c) {
      const T* sh = shift + int64_t(c) * d;
      T rr[R];
      for (int r = 0; r < R; ++r) {
        rr[r] = L[r * kp + c];
        for (int j = 0; j < d; ++j) diff[r * dp + j] = x[(i + r) * d + j] - sh[j];
        sr[c] += rr[r];
      }
      // coef[r][a] = r_ic e_a, then for each chunk of columns, its R rows' e kept in
      // registers across the rows a <= column of the triangle
      for (int r = 0; r < R; ++r)
        for (int a = 0; a < d; ++a) coef[r * dp + a] = rr[r] * diff[r * dp + a];
      T* sxc = sx + int64_t(c) * dp;
      T* sc = sxx + int64_t(c) * d * dp;
      for (int jc = 0; jc < dp; jc += N) {
        V<T> e[R];
        for (int r = 0; r < R; ++r) e[r] = load(diff + r * dp + jc);
        V<T> acc = load(sxc + jc);
        for (int r = 0; r < R; ++r) acc += splat<T>(rr[r]) * e[r];
        store(sxc + jc, acc);
        const int rows_of_s = std::min(d, jc + N);
        for (int a = 0; a < rows_of_s; ++a) {
          T* at = sc + int64_t(a) * dp + jc;
          V<T> s_a = load(at);
          for (int r = 0; r < R; ++r) s_a += splat<T>(coef[r * dp + a]) * e[r];
          store(at, s_a);
        }
      }
    }
    return ll;
  }
};

// One fit's direct pass over rows [begin, end), into sums laid out as
// [sr (k) | sx (k x dp) | sxx (k x d x dp)].
template <typename T>
T direct_rows(const DirectPass<T, 8>& many, int64_t begin, int64_t end, T* sums) {
  constexpr int R = 8;
  const int d = many.d, dp = many.dp, k = many.k, kp = many.kp;
  std::vector<T> diff(R * dp, T(0)), coef(R * dp, T(0)), L(R * kp);
  T* sr = sums;
  T* sx = sums + k;
  T* sxx = sx + int64_t(k) * dp;
  T ll = 0;
  int64_t i = begin;
  for (; i + R <= end; i += R) ll += many.rows(i, diff.data(), coef.data(), L.data(), sr, sx, sxx);
  DirectPass<T, 1> one{many.x, many.w, many.mu, many.u, many.cst, many.shift,
                       d, dp, k, kp, many.upper};
  for (; i < end; ++i) ll += one.rows(i, diff.data(), coef.data(), L.data(), sr, sx, sxx);
  return ll;
}

// The floating-point mode of the calling thread (x86: flush-to-zero and
// denormals-are-zero, which XLA sets in its threads), so that the helper computes as
// the caller does: the same results, and no slow arithmetic on subnormal numbers.
#ifdef JAXGMM_X86
using FpMode = unsigned int;
inline FpMode get_fp_mode() { return _mm_getcsr(); }
inline void set_fp_mode(FpMode m) { _mm_setcsr(m); }
#elif defined(__aarch64__)
using FpMode = uint64_t;  // FPCR: its FZ bit flushes subnormals
inline FpMode get_fp_mode() {
  uint64_t m;
  asm volatile("mrs %0, fpcr" : "=r"(m));
  return m;
}
inline void set_fp_mode(FpMode m) { asm volatile("msr fpcr, %0" : : "r"(m)); }
#else
using FpMode = int;
inline FpMode get_fp_mode() { return 0; }
inline void set_fp_mode(FpMode) {}
#endif

// One helper thread beside the caller's: the second half of the rows.
class Helper {
 public:
  static Helper& get() {
    // never destroyed: no join at exit. A child of fork() has no helper thread (only
    // the forking thread survives): it starts its own rather than wait on the parent's.
    static std::mutex made;
    static Helper* h = nullptr;
    static pid_t owner = 0;
    std::lock_guard<std::mutex> l(made);
    if (h == nullptr || owner != getpid()) h = new Helper(), owner = getpid();
    return *h;
  }
  // Runs f on the helper while the caller runs g; false (nothing run) if busy. An f
  // the helper has not begun when g returns is not run at all (the work f and g
  // share is then done: split_rows).
  bool run(const std::function<void()>& f, const std::function<void()>& g) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    job_ = &f;
    mode_ = get_fp_mode();
    {
      std::lock_guard<std::mutex> l(m_);  // a helper about to sleep sees it posted
      state_.store(kPosted);
    }
    cv_.notify_one();
    g();
    int posted = kPosted;
    if (state_.compare_exchange_strong(posted, kIdle)) return true;  // not begun: taken back
    // the helper is in its last chunk: wait for it awake (a thread put to sleep is
    // woken up tens of microseconds later on a virtual machine: 5% of a block)
    if (!spin_until([&] { return state_.load() == kDone; })) {
      std::unique_lock<std::mutex> l(m_);
      done_cv_.wait(l, [&] { return state_.load() == kDone; });
    }
    state_.store(kIdle);
    return true;
  }

 private:
  enum : int { kIdle, kPosted, kRunning, kDone };
  // Polls `ready` for up to 200 microseconds (about half a block's work at the
  // reference shape); whether it became true.
  template <typename F>
  static bool spin_until(F ready) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
    for (int i = 0;; ++i) {
      if (ready()) return true;
      if ((i & 63) == 63 && std::chrono::steady_clock::now() > until) return false;
      pause();
    }
  }
  static void pause() {
#ifdef JAXGMM_X86
    __builtin_ia32_pause();  // (GCC and clang alike; clang declares _mm_pause elsewhere)
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }
  Helper() { std::thread([this] { loop(); }).detach(); }
  void loop() {
    for (;;) {
      // blocks follow one another within microseconds: wait for the next one awake
      // before sleeping (woken from sleep, the helper began its first chunk 29 us
      // after the caller, on average)
      if (!spin_until([&] { return state_.load() == kPosted; })) {
        std::unique_lock<std::mutex> l(m_);
        cv_.wait(l, [&] { return state_.load() == kPosted; });
      }
      int posted = kPosted;
      if (!state_.compare_exchange_strong(posted, kRunning)) continue;  // taken back
      set_fp_mode(mode_);
      try {
        (*job_)();
      } catch (...) {  // split_rows' jobs catch their own; never leave the caller waiting
      }
      {
        std::lock_guard<std::mutex> l(m_);  // a caller about to sleep sees it done
        state_.store(kDone);
      }
      done_cv_.notify_one();
    }
  }
  std::mutex busy_, m_;
  std::condition_variable cv_, done_cv_;
  const std::function<void()>* job_ = nullptr;  // written before state_ turns kPosted
  FpMode mode_{};
  std::atomic<int> state_{kIdle};
};

// sum_i over rows [0, b) of run(lo, hi, sums) (which adds its rows' sums, n of them,
// to `sums` and returns their log-likelihood), on the caller's thread and the helper.
// The rows are cut into chunks (a multiple of 8 rows each, fixed by b and n) that
// either thread takes as it comes free: a late start or a slower core costs at most
// one chunk, where fixed halves kept the other thread waiting (12% of a pass at the
// reference shape). Each chunk sums into its own buffer and the chunks are added in
// order, so the result does not depend on which thread ran what.
template <typename T, typename Run>
T split_rows(int64_t b, int64_t n, T* sums, Run run) {
  std::fill(sums, sums + n, T(0));
  if (b < 256) return run(0, b, sums);
  // up to 16 chunks of at least 128 rows, their sums within 512 KB (the centred
  // form's are K x D x D: more chunks, each summing into memory not in cache, made
  // a D=64 pass 35% slower), at least 2
  const int64_t by_memory = (int64_t(512) << 10) / (n * int64_t(sizeof(T)));
  const int64_t wanted = std::max<int64_t>(2, std::min<int64_t>({16, b / 128, by_memory}));
  const int64_t step = ((b + wanted - 1) / wanted + 7) & ~int64_t(7);
  const int64_t chunks = (b + step - 1) / step;
  // chunk 0 sums into `sums` itself; the others' buffers, within the budget, are
  // kept from call to call on this thread (allocated anew, each block's call faulted
  // in fresh pages); larger ones (two chunks of wide sums) are the call's own
  const int64_t n_parts = (chunks - 1) * n;
  thread_local std::vector<T> kept;
  std::vector<T> own;
  const bool keep = n_parts * int64_t(sizeof(T)) <= (int64_t(512) << 10);
  if (keep && int64_t(kept.size()) < n_parts) kept.resize(n_parts);
  if (!keep) own.resize(n_parts);
  T* parts = keep ? kept.data() : own.data();
  std::fill(parts, parts + n_parts, T(0));
  std::vector<T> lls(chunks, T(0));
  std::atomic<int64_t> next{0};
  // an exception on either thread is raised once both have finished (the helper's
  // on the caller's thread; the caller's only after the helper no longer runs)
  std::exception_ptr failed[2];
  auto work = [&](int t) {
    try {
      for (int64_t c; (c = next.fetch_add(1)) < chunks;) {
        T* into = c == 0 ? sums : parts + (c - 1) * n;
        lls[c] = run(c * step, std::min(b, (c + 1) * step), into);
      }
    } catch (...) {
      failed[t] = std::current_exception();
      next.store(chunks);  // the other thread takes no more chunks
    }
  };
  std::function<void()> mine = [&] { work(0); }, helpers = [&] { work(1); };
  if (!Helper::get().run(helpers, mine)) mine();  // helper busy: all chunks here
  for (auto& e : failed)
    if (e) std::rethrow_exception(e);
  T total = lls[0];
  for (int64_t c = 1; c < chunks; ++c) {
    const T* part = parts + (c - 1) * n;
    for (int64_t j = 0; j < n; ++j) sums[j] += part[j];
    total += lls[c];
  }
  return total;
}

// Leading (batch) dimensions: every operand has as many (vmap's expand_dims adds one
// per level); size 1 broadcasts.
struct Lead {
  std::vector<int64_t> out;  // the result's leading shape
  int64_t size() const {
    int64_t n = 1;
    for (auto v : out) n *= v;
    return n;
  }
  // Offset (in elements) of batch index f in an operand of leading dims `dims` and
  // trailing size `inner`.
  static int64_t offset(int64_t f, const std::vector<int64_t>& out,
                        const std::vector<int64_t>& dims, int64_t inner) {
    int64_t off = 0, stride = inner;
    for (int j = int(out.size()) - 1; j >= 0; --j) {
      int64_t idx = f % out[j];
      f /= out[j];
      if (dims[j] != 1) off += idx * stride;
      stride *= dims[j];
    }
    return off;
  }
  // Whether an operand of leading dims `dims` broadcasts to `out` (offset's premise).
  bool takes(const std::vector<int64_t>& dims) const {
    if (dims.size() != out.size()) return false;
    for (size_t j = 0; j < dims.size(); ++j)
      if (dims[j] != 1 && dims[j] != out[j]) return false;
    return true;
  }
};

// Fit f's block (index[0], clamped) and how many of its rows hold data (index[1],
// clamped to [0, b]): the padding past the data (weight 0) adds nothing to any sum
// and is not computed (a last block mostly padding cost diag 13% of a pass).
inline void block_and_rows(const int32_t* index, int64_t n_blocks, int64_t b, int64_t* block,
                           int64_t* rows) {
  *block = std::min(std::max(int64_t(index[0]), int64_t(0)), n_blocks - 1);
  *rows = std::min(std::max(int64_t(index[1]), int64_t(0)), b);
}

// Whether a factor u (d x dp) is upper triangular: its zeros below the diagonal are
// then skipped (every factor jaxgmm makes is; one that is not is read whole).
template <typename T>
bool upper_triangular(const T* u, int d, int dp) {
  for (int a = 1; a < d; ++a)
    for (int j = 0; j < a; ++j)
      if (u[int64_t(a) * dp + j] != T(0)) return false;
  return true;
}

// Whether an operand's last dimensions are `core` (a mismatched call would read or
// write past its buffers: the Python wrappers make the shapes, this checks them).
template <typename Buf>
bool ends_with(const Buf& b, std::initializer_list<int64_t> core) {
  auto dims = b.dimensions();
  if (dims.size() < core.size()) return false;
  return std::equal(core.begin(), core.end(), dims.end() - core.size());
}

template <typename Buf>
std::vector<int64_t> leading(const Buf& b, int core) {
  auto dims = b.dimensions();
  return std::vector<int64_t>(dims.begin(), dims.end() - core);
}

template <ffi::DataType DT>
ffi::Error PhiPass(ffi::Buffer<DT> x, ffi::Buffer<ffi::S32> index, ffi::Buffer<DT> w,
                   ffi::Buffer<DT> c, ffi::Buffer<DT> a, ffi::Buffer<DT> u,
                   ffi::ResultBuffer<DT> s, ffi::ResultBuffer<DT> ll,
                   ffi::ResultBuffer<DT> pooled, int32_t mode) try {
  using T = ffi::NativeType<DT>;
  auto xd = x.dimensions();
  auto ad = a.dimensions();
  if (xd.size() < 3 || ad.size() < 2) return ffi::Error::InvalidArgument("phi_pass: rank");
  const int64_t n_blocks = xd[xd.size() - 3];
  const int64_t b = xd[xd.size() - 2];
  const int d = int(xd[xd.size() - 1]);
  const int n_phi = int(ad[ad.size() - 2]);
  const int k = int(ad[ad.size() - 1]);
  constexpr int N = Vec<T>::N;
  if (k % N != 0) return ffi::Error::InvalidArgument("phi_pass: k not padded");
  const bool shared = mode == kShared;
  const int n_q = mode == kSquares ? d : mode == kNorm ? 1 : mode == kTriangle ? d * (d + 1) / 2 : 0;
  if (mode < kSquares || mode > kShared || n_phi != 1 + d + n_q)
    return ffi::Error::InvalidArgument("phi_pass: a's rows do not match mode and x");
  auto ud = u.dimensions();
  const int dp = ud.size() < 2 ? 0 : int(ud[ud.size() - 1]);
  const int64_t n_tri = shared ? int64_t(d) * (d + 1) / 2 : 0;
  // shared: dp is d rounded up to whole vectors, no more: the rows' x - c and the
  // pooled sums are laid out dp apart, and whole-vector loads stay within a row
  if (ud.size() < 2 || (shared && (ud[ud.size() - 2] != d || dp != (d + N - 1) / N * N)))
    return ffi::Error::InvalidArgument("phi_pass: u is not d x (d padded)");
  if (!ends_with(w, {b}) || !ends_with(c, {d}) || !ends_with(*pooled, {n_tri}) ||
      !ends_with(*s, {n_phi, k}))
    return ffi::Error::InvalidArgument("phi_pass: w, c or pooled do not match x");
  Lead lead{leading(*s, 2)};
  auto lx = leading(x, 3), li = leading(index, 1), lw = leading(w, 1), lc = leading(c, 1),
       la = leading(a, 2), lu = leading(u, 2);
  for (auto* l : {&lx, &li, &lw, &lc, &la, &lu})
    if (!lead.takes(*l)) return ffi::Error::InvalidArgument("phi_pass: batch dims differ");
  if (leading(*ll, 0) != lead.out || leading(*pooled, 1) != lead.out)
    return ffi::Error::InvalidArgument("phi_pass: batch dims differ");
  const int64_t n_s = int64_t(n_phi) * k;
  // the shared form's pooled moments follow s in one buffer of sums (d x dp)
  std::vector<T> sums(shared ? n_s + int64_t(d) * dp : 0);
  const int64_t fits = lead.size();
  for (int64_t f = 0; f < fits; ++f) {
    // the block's rows, read in place from all of them (no copy of the block)
    int64_t block, rows;
    block_and_rows(index.typed_data() + Lead::offset(f, lead.out, li, 2), n_blocks, b, &block,
                   &rows);
    const T* uf = u.typed_data() + Lead::offset(f, lead.out, lu, int64_t(ud[ud.size() - 2]) * dp);
    const Pass<T, 8> pass{
        x.typed_data() + Lead::offset(f, lead.out, lx, n_blocks * b * d) + block * b * d,
        w.typed_data() + Lead::offset(f, lead.out, lw, b),
        c.typed_data() + Lead::offset(f, lead.out, lc, d),
        a.typed_data() + Lead::offset(f, lead.out, la, n_s),
        uf,
        d, n_phi, k, mode, dp, shared && upper_triangular(uf, d, dp)};
    T* sf = s->typed_data() + f * n_s;
    T* out = shared ? sums.data() : sf;
    const int64_t n = shared ? int64_t(sums.size()) : n_s;
    ll->typed_data()[f] = split_rows<T>(rows, n, out, [&](int64_t lo, int64_t hi, T* into) {
      return pass_rows<T>(pass, lo, hi, into);
    });
    if (!shared) continue;
    std::copy(out, out + n_s, sf);
    T* pf = pooled->typed_data() + f * n_tri;
    for (int i = 0, p = 0; i < d; ++i)
      for (int j = i; j < d; ++j) pf[p++] = out[n_s + int64_t(i) * dp + j];
  }
  return ffi::Error::Success();
} catch (const std::exception& e) {  // std::bad_alloc: an error in Python, not an abort
  return ffi::Error::Internal(std::string("phi_pass: ") + e.what());
}

template <ffi::DataType DT>
ffi::Error DirectPassHandler(ffi::Buffer<DT> x, ffi::Buffer<ffi::S32> index, ffi::Buffer<DT> w,
                             ffi::Buffer<DT> mu, ffi::Buffer<DT> u, ffi::Buffer<DT> cst,
                             ffi::Buffer<DT> shift, ffi::ResultBuffer<DT> sr,
                             ffi::ResultBuffer<DT> sx, ffi::ResultBuffer<DT> sxx,
                             ffi::ResultBuffer<DT> ll) try {
  using T = ffi::NativeType<DT>;
  constexpr int N = Vec<T>::N;
  auto xd = x.dimensions();
  auto ud = u.dimensions();
  if (xd.size() < 3 || ud.size() < 3) return ffi::Error::InvalidArgument("direct_pass: rank");
  const int64_t n_blocks = xd[xd.size() - 3];
  const int64_t b = xd[xd.size() - 2];
  const int d = int(xd[xd.size() - 1]);
  const int k = int(ud[ud.size() - 3]);
  const int dp = int(ud[ud.size() - 1]);
  if (dp != (d + N - 1) / N * N) return ffi::Error::InvalidArgument("direct_pass: u not padded");
  const int kp = (k + N - 1) / N * N;
  if (!ends_with(w, {b}) || !ends_with(mu, {k, d}) || !ends_with(u, {k, d, dp}) ||
      !ends_with(cst, {k}) || !ends_with(shift, {k, d}) || !ends_with(*sx, {k, d}) ||
      !ends_with(*sr, {k}) || !ends_with(*sxx, {k, int64_t(d) * (d + 1) / 2}))
    return ffi::Error::InvalidArgument("direct_pass: operands do not match x and u");
  Lead lead{leading(*ll, 0)};
  auto lx = leading(x, 3), li = leading(index, 1), lw = leading(w, 1), lm = leading(mu, 2),
       lu = leading(u, 3), lc = leading(cst, 1), ls = leading(shift, 2);
  for (auto* l : {&lx, &li, &lw, &lm, &lu, &lc, &ls})
    if (!lead.takes(*l)) return ffi::Error::InvalidArgument("direct_pass: batch dims differ");
  if (leading(*sr, 1) != lead.out || leading(*sx, 2) != lead.out ||
      leading(*sxx, 2) != lead.out)
    return ffi::Error::InvalidArgument("direct_pass: batch dims differ");
  const int64_t n_tri = int64_t(d) * (d + 1) / 2;
  const int64_t n_sums = k + int64_t(k) * dp + int64_t(k) * d * dp;
  std::vector<T> sums(n_sums);
  for (int64_t f = 0; f < lead.size(); ++f) {
    int64_t block, rows;
    block_and_rows(index.typed_data() + Lead::offset(f, lead.out, li, 2), n_blocks, b, &block,
                   &rows);
    const T* xf = x.typed_data() + Lead::offset(f, lead.out, lx, n_blocks * b * d) + block * b * d;
    const T* uf = u.typed_data() + Lead::offset(f, lead.out, lu, int64_t(k) * d * dp);
    std::vector<char> upper(k);
    for (int c = 0; c < k; ++c) upper[c] = upper_triangular(uf + int64_t(c) * d * dp, d, dp);
    DirectPass<T, 8> pass{xf,
                          w.typed_data() + Lead::offset(f, lead.out, lw, b),
                          mu.typed_data() + Lead::offset(f, lead.out, lm, int64_t(k) * d),
                          uf,
                          cst.typed_data() + Lead::offset(f, lead.out, lc, k),
                          shift.typed_data() + Lead::offset(f, lead.out, ls, int64_t(k) * d),
                          d, dp, k, kp, reinterpret_cast<const bool*>(upper.data())};
    const T total = split_rows<T>(rows, n_sums, sums.data(), [&](int64_t lo, int64_t hi, T* out) {
      return direct_rows<T>(pass, lo, hi, out);
    });
    ll->typed_data()[f] = total;
    T* srf = sr->typed_data() + f * k;
    T* sxf = sx->typed_data() + f * int64_t(k) * d;
    T* sxxf = sxx->typed_data() + f * int64_t(k) * n_tri;
    for (int c = 0; c < k; ++c) {
      srf[c] = sums[c];
      for (int j = 0; j < d; ++j) sxf[c * d + j] = sums[k + int64_t(c) * dp + j];
      const T* sc = sums.data() + k + int64_t(k) * dp + int64_t(c) * d * dp;
      int64_t p = 0;
      for (int a = 0; a < d; ++a)
        for (int j = a; j < d; ++j) sxxf[c * n_tri + p++] = sc[int64_t(a) * dp + j];
    }
  }
  return ffi::Error::Success();
} catch (const std::exception& e) {
  return ffi::Error::Internal(std::string("direct_pass: ") + e.what());
}

}  // namespace

#define JAXGMM_PHI_PASS(name, DT)                          \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(name, PhiPass<DT>,         \
                                ffi::Ffi::Bind()           \
                                    .Arg<ffi::Buffer<DT>>() \
                                    .Arg<ffi::Buffer<ffi::S32>>() \
                                    .Arg<ffi::Buffer<DT>>() \
                                    .Arg<ffi::Buffer<DT>>() \
                                    .Arg<ffi::Buffer<DT>>() \
                                    .Arg<ffi::Buffer<DT>>() \
                                    .Ret<ffi::Buffer<DT>>() \
                                    .Ret<ffi::Buffer<DT>>() \
                                    .Ret<ffi::Buffer<DT>>() \
                                    .Attr<int32_t>("mode"));

JAXGMM_PHI_PASS(JaxgmmPhiPassF64, ffi::F64)
JAXGMM_PHI_PASS(JaxgmmPhiPassF32, ffi::F32)

#define JAXGMM_DIRECT_PASS(name, DT)                             \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(name, DirectPassHandler<DT>,     \
                                ffi::Ffi::Bind()                 \
                                    .Arg<ffi::Buffer<DT>>()       \
                                    .Arg<ffi::Buffer<ffi::S32>>() \
                                    .Arg<ffi::Buffer<DT>>()       \
                                    .Arg<ffi::Buffer<DT>>()       \
                                    .Arg<ffi::Buffer<DT>>()       \
                                    .Arg<ffi::Buffer<DT>>()       \
                                    .Arg<ffi::Buffer<DT>>()       \
                                    .Ret<ffi::Buffer<DT>>()       \
                                    .Ret<ffi::Buffer<DT>>()       \
                                    .Ret<ffi::Buffer<DT>>()       \
                                    .Ret<ffi::Buffer<DT>>());

JAXGMM_DIRECT_PASS(JaxgmmDirectPassF64, ffi::F64)
JAXGMM_DIRECT_PASS(JaxgmmDirectPassF32, ffi::F32)
