// The per-element math of every estimator (docs/SPEC.md "ReDGE", "ReDGE-Cov", "ReDGE-Max",
// "Baselines"), written once as small inline templates over a vector type V and called by the
// forward and the backward of both layouts: the row kernels (V = Vectorized<T>,
// row_kernels_impl.h) and the lane kernels (V = Lanes<T, NV>, lane_kernels_impl.h).
//
// Bitwise recompute (docs/DESIGN.md): the backward recomputes every p_k and x_k of the forward
// from the saved statistics; both directions call the same function here, so they run the same
// operations in the same order by construction (the build sets -ffp-contract=off, so no
// multiply-add is fused differently in one caller). Any change of a formula below changes both.
//
// V needs + - * /, neg(), sqrt(), V::blendv and vmax(V, V) (below for Vectorized; Lanes has its
// own). Included inside namespace redge_kernels::CPU_CAPABILITY by row_kernels_impl.h.
#pragma once

template <typename T>
inline Vectorized<T> vmax(const Vectorized<T>& a, const Vectorized<T>& b) {
  return at::vec::maximum(a, b);
}

/// The scalars of denoiser step k (coefs row k, schedule.py) as vectors.
template <typename V>
struct StepCoefs {
  V c, a, b, sigma, half_alpha;
};

template <typename V, typename T>
inline StepCoefs<V> step_coefs(const T* coefs, int k) {
  const T* r = coefs + k * 5;
  return {V(r[kCoefC]), V(r[kCoefA]), V(r[kCoefB]), V(r[kCoefSigma]), V(T(0.5) * r[kCoefAlpha])};
}

// ---- forward chain, recomputed by the backward --------------------------------------------------

/// ReDGE denoiser logits l_k = phi + c_k x_k (eq. 10).
template <typename V>
inline V redge_logit(const V& phi, const V& c, const V& x) {
  return phi + c * x;
}

/// ReDGE-Cov denoiser logits l_k = phi + c_k lam (x_k - sigma_k mu - alpha_k / 2).
template <typename V>
inline V cov_logit(const V& phi, const V& c, const V& sigma, const V& half_alpha, const V& mu,
                   const V& lam, const V& x) {
  const V shift = sigma * mu + half_alpha;
  return phi + (c * lam) * (x - shift);
}

/// l_k of either chain (cov selects ReDGE-Cov; mu, lam unused otherwise).
template <typename V>
inline V chain_logit(bool cov, const V& phi, const StepCoefs<V>& s, const V& mu, const V& lam,
                     const V& x) {
  return cov ? cov_logit(phi, s.c, s.sigma, s.half_alpha, mu, lam, x) : redge_logit(phi, s.c, x);
}

/// p = exp(l - m) / s as e * (1 / s), e = exp(l - m) (the chain's softmaxes k >= 1).
template <typename V>
inline V softmax_prob(const V& e, const V& inv_s) {
  return e * inv_s;
}

/// DDIM step x_{k-1} = a_k p_k + b_k x_k (eq. 11).
template <typename V>
inline V ddim_step(const V& a, const V& p, const V& b, const V& x) {
  return a * p + b * x;
}

/// ReDGE-Cov base variance v = max(p (1 - p), V_MIN).
template <typename V>
inline V cov_variance(const V& p, const V& vmin) {
  return vmax(p * (V(1) - p), vmin);
}

/// ReDGE-Cov initial point x_{n-1} = mu + sqrt(v) z (mu = p).
template <typename V>
inline V cov_x_init(const V& p, const V& v, const V& z) {
  return p + v.sqrt() * z;
}

// ---- backward -----------------------------------------------------------------------------------

/// Softmax backward r = p (gp - <gp, p>), dot = <gp, p>.
template <typename V>
inline V softmax_bwd(const V& p, const V& gp, const V& dot) {
  return p * (gp - dot);
}

/// Chain backward: the gradient reaching x_k from step k: gx = c_k r + b_k gx_old (cov: c_k lam r).
template <typename V>
inline V chain_gx(bool cov, const V& c, const V& lam, const V& r, const V& b, const V& gx_old) {
  return (cov ? (c * lam) * r : c * r) + b * gx_old;
}

/// The same at step 1, where no gradient arrives from below: c_1 r (cov: c_1 lam r).
template <typename V>
inline V chain_gx1(bool cov, const V& c, const V& lam, const V& r) {
  return cov ? (c * lam) * r : c * r;
}

/// ReDGE-Cov: the step's term of d/dlam, c_k r (x_k - sigma_k mu - alpha_k / 2).
template <typename V>
inline V cov_glam_term(const StepCoefs<V>& s, const V& r, const V& x, const V& mu) {
  const V shift = s.sigma * mu + s.half_alpha;
  return s.c * (r * (x - shift));
}

/// ReDGE-Cov: the step's term of d/dmu through the logits, -c_k sigma_k lam r.
template <typename V>
inline V cov_gmu_term(const StepCoefs<V>& s, const V& lam, const V& r) {
  return (s.sigma * s.c).neg() * lam * r;
}

/// ReDGE-Cov: the gradient at p = softmax(phi) through mu = p and v = max(q, V_MIN), q = p (1 - p),
/// given gx at x_{n-1} = mu + sqrt(v) z and the accumulated glam, gmu (lam = 1 / v).
template <typename V>
inline V cov_base_grad(const V& p, const V& lam, const V& gx, const V& z, const V& glam,
                       const V& gmu, const V& vmin) {
  const V one(1), two(2), zero(0);
  const V q = p * (one - p);
  const V sq = vmax(q, vmin).sqrt();
  const V gv = (gx * z) / (two * sq) - glam * lam * lam;
  const V gq = V::blendv(zero, gv, q >= vmin);
  return (gmu + gx) + gq * (one - two * p);
}

/// ReDGE-Max at step 1: 1/2 (r + <g, D> D), D = one_hot(i) - p_1 (ReinMax, eq. 5).
template <typename V>
inline V redge_max_step1(const V& r, const V& gD, const V& onehot, const V& p) {
  return V(0.5) * (r + gD * (onehot - p));
}

/// Gumbel-Softmax logit (phi + G - m) / tau, m the row max of the scores phi + G: the max is
/// taken before dividing by tau (softmax is shift invariant), so that finite logits near the
/// float limit do not overflow for tau < 1. The row max of these logits is 0.
template <typename V>
inline V gumbel_logit(const V& score, const V& m, const V& tau) {
  return (score - m) / tau;
}

/// ReinMax tempered logit (phi - m) / tau, m the row max of phi (stats slot 0): as gumbel_logit,
/// shifted before dividing by tau; the row max is 0.
template <typename V>
inline V reinmax_tempered(const V& phi, const V& m, const V& tau) {
  return (phi - m) / tau;
}

/// ReinMax p1 = (softmax(phi / tau) + D) / 2, given e = exp(reinmax_tempered) and its sum.
template <typename V>
inline V reinmax_p1(const V& e, const V& sum, const V& onehot) {
  return V(0.5) * (e / sum + onehot);
}

/// ReinMax gradient before centring: u + w, u = 2 g p1 - p1 S_u, w = -g/2 p0 - p0 S_w, with
/// S_u = sum(2 g p1), S_w = sum(-g/2 p0).
template <typename V>
inline V reinmax_grad(const V& g, const V& p0, const V& p1, const V& su, const V& sw) {
  const V u = (V(2) * g) * p1 - p1 * su;
  const V w = (V(-0.5) * g) * p0 - p0 * sw;
  return u + w;
}

// ---- whole passes shared by both layouts (n elements, V::size() at a time) ----------------------

/// ReDGE-Cov tail: gmu <- cov_base_grad at every element; returns the per-lane partial sums of
/// gmu * p (the dot product of the final softmax backward through p = softmax(phi)).
template <typename V, typename T>
inline V cov_base_grad_pass(int64_t n, const T* mu, const T* lam, const T* gx, const T* z,
                            const T* glam, T* gmu, const V& vmin) {
  constexpr int L = V::size();
  V dp(T(0));
  for (int64_t j = 0; j < n; j += L) {
    const V m = V::loadu(mu + j), lv = V::loadu(lam + j), gxv = V::loadu(gx + j);
    const V gp0 = cov_base_grad(m, lv, gxv, V::loadu(z + j), V::loadu(glam + j),
                                V::loadu(gmu + j), vmin);
    gp0.store(gmu + j);
    dp = dp + gp0 * m;
  }
  return dp;
}

/// out += p (gp - dot) at every element (a softmax backward added to the gradient).
template <typename V, typename T>
inline void softmax_bwd_add_pass(int64_t n, const T* p, const T* gp, const V& dot, T* out) {
  constexpr int L = V::size();
  for (int64_t j = 0; j < n; j += L) {
    (V::loadu(out + j) + softmax_bwd(V::loadu(p + j), V::loadu(gp + j), dot)).store(out + j);
  }
}
