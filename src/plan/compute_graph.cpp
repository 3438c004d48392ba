#include "plan/compute_graph.hpp"

#include <algorithm>
#include <array>
#include <limits>

namespace agifarm::plan {

namespace {

// ---------------------------------------------------------------------------------------------
// A minimal ggml: tensors with shape, strides, sources and views, in one arena indexed by int.

enum class dtype : std::uint8_t { f32, f16, i32, i64, q8_0, q4_0, q4_1, q5_0, q5_1, raw };

struct type_traits {
  std::uint64_t size, block;
};
type_traits traits(dtype t) {
  switch (t) {
    case dtype::f32:
      return {4, 1};
    case dtype::f16:
      return {2, 1};
    case dtype::i32:
      return {4, 1};
    case dtype::i64:
      return {8, 1};
    case dtype::q8_0:
      return {34, 32};
    case dtype::q4_0:
      return {18, 32};
    case dtype::q4_1:
      return {20, 32};
    case dtype::q5_0:
      return {22, 32};
    case dtype::q5_1:
      return {24, 32};
    case dtype::raw:
      return {1, 1};
  }
  return {1, 1};
}
dtype kv_type(const std::string& s) {
  if (s == "f32") return dtype::f32;
  if (s == "q8_0") return dtype::q8_0;
  if (s == "q4_0" || s == "iq4_nl") return dtype::q4_0;
  if (s == "q4_1") return dtype::q4_1;
  if (s == "q5_0") return dtype::q5_0;
  if (s == "q5_1") return dtype::q5_1;
  return dtype::f16;  // f16, bf16
}
bool quantized(dtype t) { return traits(t).block > 1; }

enum class op : std::uint8_t {
  none,
  get_rows,
  mul_mat,
  mul_mat_id,
  rms_norm,
  mul,
  add,
  div,
  rope,
  view,
  reshape,
  permute,
  transpose,
  cont,
  flash_attn,
  soft_max,
  set_rows,
  glu,
  argsort,
  sum_rows,
  clamp,
  add_id,
  unary,
  concat
};
bool is_view_op(op o) { return o == op::view || o == op::reshape || o == op::permute || o == op::transpose; }
bool can_inplace(op o) {
  switch (o) {
    case op::add:
    case op::mul:
    case op::div:
    case op::rms_norm:
    case op::rope:
    case op::soft_max:
    case op::clamp:
    case op::add_id:
    case op::unary:
      return true;
    default:
      return false;
  }
}

constexpr int k_max_src = 5;
constexpr std::uint8_t k_input = 1, k_output = 2, k_weight = 4;

struct tensor {
  op o = op::none;
  dtype type = dtype::f32;
  std::array<std::int64_t, 4> ne{1, 1, 1, 1};
  std::array<std::uint64_t, 4> nb{};
  std::array<int, k_max_src> src{-1, -1, -1, -1, -1};
  int view_src = -1;
  std::uint8_t flags = 0;
  int buffer = -1;   // backend whose buffer already holds it (weights, KV cache); -1: none
  int backend = -1;  // scheduler's assignment
  int forced = -1;   // llama.cpp's graph callback pinned it to a backend
};

std::uint64_t nbytes(const tensor& t) {
  auto tr = traits(t.type);
  for (auto n : t.ne)
    if (n <= 0) return 0;
  std::uint64_t b = tr.block == 1 ? tr.size : static_cast<std::uint64_t>(t.ne[0]) * t.nb[0] / tr.block;
  for (int i = tr.block == 1 ? 0 : 1; i < 4; ++i) b += static_cast<std::uint64_t>(t.ne[i] - 1) * t.nb[i];
  return b;
}

struct graph {
  std::vector<tensor> t;
  std::vector<int> nodes, leafs;
  std::vector<char> visited;

  void set_contiguous(tensor& x) {
    auto tr = traits(x.type);
    x.nb[0] = tr.size;
    x.nb[1] = x.nb[0] * (static_cast<std::uint64_t>(x.ne[0]) / tr.block);
    x.nb[2] = x.nb[1] * static_cast<std::uint64_t>(x.ne[1]);
    x.nb[3] = x.nb[2] * static_cast<std::uint64_t>(x.ne[2]);
  }
  int add(tensor x) {
    t.push_back(x);
    return static_cast<int>(t.size()) - 1;
  }
  int leaf(dtype type, std::array<std::int64_t, 4> ne, std::uint8_t flags, int buffer) {
    tensor x;
    x.type = type;
    x.ne = ne;
    x.flags = flags;
    x.buffer = buffer;
    set_contiguous(x);
    return add(x);
  }
  int make(op o, dtype type, std::array<std::int64_t, 4> ne, std::initializer_list<int> srcs) {
    tensor x;
    x.o = o;
    x.type = type;
    x.ne = ne;
    set_contiguous(x);
    int i = 0;
    for (int s : srcs) x.src[i++] = s;
    return add(x);
  }
  int root(int a) const { return t[a].view_src >= 0 ? t[a].view_src : a; }
  int view(op o, int a, std::array<std::int64_t, 4> ne, std::array<std::uint64_t, 4> nb) {
    tensor x;
    x.o = o;
    x.type = t[a].type;
    x.ne = ne;
    x.nb = nb;
    x.src[0] = a;
    x.view_src = root(a);
    x.buffer = t[x.view_src].buffer;
    return add(x);
  }
  int reshape(int a, std::array<std::int64_t, 4> ne) {
    tensor x;
    x.type = t[a].type;
    x.ne = ne;
    set_contiguous(x);
    return view(op::reshape, a, ne, x.nb);
  }
  int permute(int a, int p0, int p1, int p2, int p3) {
    std::array<std::int64_t, 4> ne{};
    std::array<std::uint64_t, 4> nb{};
    const int p[4] = {p0, p1, p2, p3};
    for (int i = 0; i < 4; ++i) {
      ne[p[i]] = t[a].ne[i];
      nb[p[i]] = t[a].nb[i];
    }
    return view(op::permute, a, ne, nb);
  }
  int same_as(op o, int a, std::initializer_list<int> srcs) { return make(o, t[a].type, t[a].ne, srcs); }

  void visit(int n) {
    if (n < 0) return;
    if (visited.size() < t.size()) visited.resize(t.size(), 0);
    if (visited[n]) return;
    visited[n] = 1;
    for (int s : t[n].src) visit(s);
    if (t[n].o == op::none)
      leafs.push_back(n);
    else
      nodes.push_back(n);
  }
  void expand(int n) { visit(n); }
};

// ---------------------------------------------------------------------------------------------
// The model graph, as llama.cpp builds it for graph_reserve (src/models/*.cpp, src/llama-graph.cpp).

void build_graph(const compute_graph_spec& s, graph& g, int cpu) {
  const std::int64_t T = s.n_tokens, E = s.n_embd, hk = s.head_dim_k, hv = s.head_dim_v;
  const std::int64_t nh = s.n_head, nkv = s.n_head_kv, ns = s.n_stream, kv_size = s.kv_size;
  const dtype tk = kv_type(s.type_k), tv = kv_type(s.type_v);
  const bool fa = s.flash_attn;
  const bool v_trans = !fa;
  const int n_layer = static_cast<int>(s.layers.size());
  auto slot = [&](int dev) { return dev < 0 ? cpu : dev; };
  auto w = [&](layer_weights::w x) {
    if (x.bytes == 0) return -1;
    return g.leaf(dtype::raw, {static_cast<std::int64_t>(x.bytes), 1, 1, 1}, k_weight, slot(x.slot));
  };
  auto input = [&](dtype type, std::array<std::int64_t, 4> ne) { return g.leaf(type, ne, k_input, -1); };
  auto mul_mat = [&](int a, std::int64_t rows, int b) {
    const auto B = g.t[b].ne;
    return g.make(op::mul_mat, dtype::f32, {rows, B[1], B[2], B[3]}, {a, b});
  };
  const bool pin_norms = (s.full_offload || T < 32) && !s.pins_dropped;
  auto rms_norm = [&](int a, int il) {
    int n = g.same_as(op::rms_norm, a, {a});
    if (pin_norms && il >= 0) g.t[n].forced = slot(s.layer_device[il]);
    return n;
  };
  auto norm = [&](int a, layer_weights::w weight, int il) {
    int n = rms_norm(a, il);
    int wt = w(weight);
    return wt < 0 ? n : g.same_as(op::mul, n, {n, wt});
  };
  auto hadamard = [&](int cur, int rot, std::int64_t n) {
    const auto ne = g.t[cur].ne;
    std::int64_t nel = ne[0] * ne[1] * ne[2] * ne[3];
    int r = g.reshape(cur, {n, nel / n, 1, 1});
    r = mul_mat(rot, n, r);
    return g.reshape(r, ne);
  };

  // ggml_set_rows of `cur` into the cache view `dst` at `idxs`: a view of the cache tensor, in its buffer.
  // The K write is not pinned to a backend (forced -1); the V write keeps the cache view's assignment.
  auto store_rows = [&](int cur, int idxs, int dst, bool unpinned) {
    tensor x = g.t[dst];
    x.o = op::set_rows;
    x.src = {cur, idxs, dst, -1, -1};
    x.view_src = g.root(dst);
    x.buffer = g.t[x.view_src].buffer;
    if (unpinned) x.forced = -1;
    g.expand(g.add(x));
  };
  auto row_size = [](dtype type, std::int64_t n) {
    return traits(type).size * static_cast<std::uint64_t>(n) / traits(type).block;
  };

  // inputs
  int tok_embd = w(s.token_embd);
  int inp_tokens = input(dtype::i32, {T, 1, 1, 1});
  int inp_embd = input(dtype::f32, {E, T, 1, 1});
  int inpL = g.make(op::get_rows, dtype::f32, {E, T, 1, 1}, {tok_embd, inp_tokens});
  g.expand(inpL);
  g.expand(inp_embd);
  int inp_pos = input(dtype::i32, {T, 1, 1, 1});
  // mistral3 / llama4 temperature tuning: a per-token scale of Q (build_inp_attn_scale)
  int inp_attn_scale = s.attn_temp_scale ? input(dtype::f32, {1, 1, T, 1}) : -1;
  const std::int64_t kv = kv_size;
  int k_idxs_full = input(dtype::i64, {T, 1, 1, 1});
  int v_idxs_full =
      s.mla && fa ? -1 : input(dtype::i64, {v_trans ? T * nkv * hv : T, 1, 1, 1});  // MLA: no V cache
  int mask_full = input(fa ? dtype::f16 : dtype::f32, {kv, T / ns, 1, ns});
  // llama_kv_cache_iswa: the sliding-window layers have their own cache, indices and mask
  bool any_swa = false;
  for (const auto& L : s.layers) any_swa = any_swa || L.swa;
  const std::int64_t kv_swa = s.swa_kv_size > 0 ? s.swa_kv_size : kv;
  int k_idxs_swa = -1, v_idxs_swa = -1, mask_swa = -1;
  if (any_swa) {
    k_idxs_swa = input(dtype::i64, {T, 1, 1, 1});
    v_idxs_swa = input(dtype::i64, {v_trans ? T * nkv * hv : T, 1, 1, 1});
    mask_swa = input(fa ? dtype::f16 : dtype::f32, {kv_swa, T / ns, 1, ns});
  }
  int k_rot = -1, v_rot = -1;
  std::int64_t nrot_k = 0, nrot_v = 64;
  if (quantized(tk) && hk > 0 && hk % 64 == 0) {
    nrot_k = 64;
    do nrot_k *= 2;
    while (hk % nrot_k == 0);
    nrot_k /= 2;
    k_rot = input(dtype::f32, {nrot_k, nrot_k, 1, 1});
  }
  if (quantized(tv) && hv > 0 && hv % 64 == 0) v_rot = input(dtype::f32, {nrot_v, nrot_v, 1, 1});
  int out_ids = input(dtype::i32, {s.n_outputs, 1, 1, 1});

  for (int il = 0; il < n_layer; ++il) {
    const layer_weights& L = s.layers[il];
    const int kv_slot = s.kv_on_host ? cpu : slot(s.layer_device[il]);
    const std::int64_t kv = L.swa ? kv_swa : kv_size;
    const int k_idxs = L.swa ? k_idxs_swa : k_idxs_full, v_idxs = L.swa ? v_idxs_swa : v_idxs_full;
    const int mask = L.swa ? mask_swa : mask_full;
    int inpSA = inpL;
    int cur = norm(inpL, L.attn_norm, il);
    const bool mla = s.mla && fa;
    if (mla) {
      // deepseek2.cpp, is_mla: q_nope absorbed by wk_b into the compressed space, one K head (MQA)
      const std::int64_t R = s.kv_lora_rank, rope_d = s.n_rot, nope = s.head_dim_nope, hq = nope + rope_d;
      int q;
      if (L.wq_a.bytes) {
        q = mul_mat(w(L.wq_a), s.q_lora_rank, cur);
        q = norm(q, L.q_a_norm, il);
        q = mul_mat(w(L.wq_b), hq * nh, q);
      } else {
        q = mul_mat(w(L.wq), hq * nh, cur);
      }
      q = g.reshape(q, {hq, nh, T, 1});
      const tensor Qt = g.t[q];
      int q_nope = g.view(op::view, q, {nope, nh, T, 1}, {Qt.nb[0], Qt.nb[1], Qt.nb[2], Qt.nb[3]});
      int q_pe = g.view(op::view, q, {rope_d, nh, T, 1}, {Qt.nb[0], Qt.nb[1], Qt.nb[2], Qt.nb[3]});
      int kv_pe = mul_mat(w(L.wkv_a), R + rope_d, cur);
      const tensor KV = g.t[kv_pe];
      int kv_cmpr = g.view(op::view, kv_pe, {R, T, 1, 1}, {KV.nb[0], KV.nb[1], KV.nb[1] * T, KV.nb[1] * T});
      int k_pe = g.view(op::view, kv_pe, {rope_d, 1, T, 1}, {KV.nb[0], KV.nb[1], KV.nb[1], KV.nb[1] * T});
      k_pe = g.make(op::rope, dtype::f32, {rope_d, 1, T, 1}, {k_pe, inp_pos});
      kv_cmpr = g.make(op::rms_norm, dtype::f32, {R, T, 1, 1}, {kv_cmpr});
      if (pin_norms) g.t[kv_cmpr].forced = slot(s.layer_device[il]);
      if (int nw = w(L.kv_a_norm); nw >= 0) kv_cmpr = g.same_as(op::mul, kv_cmpr, {kv_cmpr, nw});
      q_pe = g.make(op::rope, dtype::f32, {rope_d, nh, T, 1}, {q_pe, inp_pos});
      q_nope = g.permute(q_nope, 0, 2, 1, 3);
      int absorbed = g.make(op::mul_mat, dtype::f32, {R, T, nh, 1}, {w(L.wk_b), q_nope});
      absorbed = g.permute(absorbed, 0, 2, 1, 3);
      int Qc = g.make(op::concat, dtype::f32, {R + rope_d, nh, T, 1}, {absorbed, q_pe});
      kv_cmpr = g.reshape(kv_cmpr, {R, 1, T, 1});
      int Kc = g.make(op::concat, dtype::f32, {R + rope_d, 1, T, 1}, {kv_cmpr, k_pe});
      g.expand(Qc);
      g.expand(Kc);
      // K-only cache: [R + n_rot, kv, ns]
      int kc = g.leaf(tk, {R + rope_d, kv, ns, 1}, 0, kv_slot);
      {  // in llama.cpp's order: the source view first, then the destination
        int kcur = g.reshape(Kc, {R + rope_d, T, 1, 1});
        store_rows(kcur, k_idxs, ns > 1 ? g.reshape(kc, {R + rope_d, kv * ns, 1, 1}) : kc, true);
      }
      const tensor KC = g.t[kc];
      int kview = g.view(op::view, kc, {R + rope_d, 1, kv, ns},
                         {KC.nb[0], row_size(tk, R + rope_d), KC.nb[1], KC.nb[2]});
      int vview =
          g.view(op::view, kc, {R, 1, kv, ns}, {KC.nb[0], row_size(tk, R + rope_d), KC.nb[1], KC.nb[2]});
      const tensor QQ = g.t[Qc];
      int qv = g.view(op::view, Qc, {QQ.ne[0], QQ.ne[1], QQ.ne[2] / ns, ns},
                      {QQ.nb[0], QQ.nb[1], QQ.nb[2], QQ.nb[3] / ns});
      qv = g.permute(qv, 0, 2, 1, 3);
      int kp = g.permute(kview, 0, 2, 1, 3);
      int vp = g.permute(vview, 0, 2, 1, 3);
      const tensor QP = g.t[qv];
      int o = g.make(op::flash_attn, dtype::f32, {R, QP.ne[2], QP.ne[1], QP.ne[3]}, {qv, kp, vp, mask});
      // v_mla: [R, n_head, T] -> [R, T, n_head] x wv_b -> [v, T, n_head] -> [v, n_head, T]
      int op_ = g.permute(o, 0, 2, 1, 3);
      const tensor OP = g.t[op_];
      int vm =
          g.make(op::mul_mat, dtype::f32, {s.head_dim_v_mla, OP.ne[1], OP.ne[2], OP.ne[3]}, {w(L.wv_b), op_});
      vm = g.permute(vm, 0, 2, 1, 3);
      const tensor VM = g.t[vm];
      cur = g.make(op::cont, dtype::f32, VM.ne, {vm});
      cur = g.reshape(cur, {VM.ne[0] * VM.ne[1], VM.ne[2] * VM.ne[3], 1, 1});
      g.expand(cur);
      cur = mul_mat(w(L.wo), E, cur);
    } else {
      int q = g.reshape(mul_mat(w(L.wq), hk * nh, cur), {hk, nh, T, 1});
      int k = g.reshape(mul_mat(w(L.wk), hk * nkv, cur), {hk, nkv, T, 1});
      int v = g.reshape(mul_mat(w(L.wv), hv * nkv, cur), {hv, nkv, T, 1});
      int factors = w(L.rope_freqs);
      if (s.qk_norm) {
        q = norm(q, L.q_norm, il);
        q = g.same_as(op::rope, q, {q, inp_pos, factors});
        k = norm(k, L.k_norm, il);
        k = g.same_as(op::rope, k, {k, inp_pos, factors});
      } else {
        q = g.same_as(op::rope, q, {q, inp_pos, factors});
        k = g.same_as(op::rope, k, {k, inp_pos, factors});
      }
      if (inp_attn_scale >= 0) q = g.same_as(op::mul, q, {q, inp_attn_scale});
      if (k_rot >= 0) {
        q = hadamard(q, k_rot, nrot_k);
        k = hadamard(k, k_rot, nrot_k);
      }
      if (v_rot >= 0) v = hadamard(v, v_rot, nrot_v);
      g.expand(q);
      g.expand(v);
      g.expand(k);
      // KV cache tensors of this layer
      int kc = g.leaf(tk, {hk * nkv, kv, ns, 1}, 0, kv_slot);
      int vc = g.leaf(tv, {hv * nkv, kv, ns, 1}, 0, kv_slot);
      {
        int kcur = g.view(op::view, k, {hk * nkv, T, 1, 1},
                          {g.t[k].nb[0], g.t[k].nb[2], g.t[k].nb[2] * T, g.t[k].nb[2] * T});
        store_rows(kcur, k_idxs, ns > 1 ? g.reshape(kc, {hk * nkv, kv * ns, 1, 1}) : kc, true);
      }
      {
        int vcur, vdst;
        if (!v_trans) {
          vcur = g.view(op::view, v, {hv * nkv, T, 1, 1},
                        {g.t[v].nb[0], g.t[v].nb[2], g.t[v].nb[2] * T, g.t[v].nb[2] * T});
          vdst = ns > 1 ? g.reshape(vc, {hv * nkv, kv * ns, 1, 1}) : vc;
        } else {
          vcur = g.reshape(v, {hv * nkv, T, 1, 1});
          vdst = g.reshape(vc, {1, hv * nkv * kv * ns, 1, 1});
          vcur = g.reshape(vcur, {1, hv * nkv * T, 1, 1});
        }
        store_rows(vcur, v_idxs, vdst, false);
      }
      // views of the cache (get_k / get_v)
      const tensor KC = g.t[kc];
      int kview = g.view(op::view, kc, {hk, nkv, kv, ns}, {KC.nb[0], row_size(tk, hk), KC.nb[1], KC.nb[2]});
      int vview;
      {
        const tensor VC = g.t[vc];
        const std::uint64_t row = VC.nb[1];  // bytes of one cell's V row
        if (!v_trans) {
          vview = g.view(op::view, vc, {hv, nkv, kv, ns}, {VC.nb[0], row_size(tv, hv), row, VC.nb[2]});
        } else {
          const std::uint64_t es = traits(tv).size;
          vview = g.view(op::view, vc, {kv, nkv, hv, ns}, {es, es * kv * hv, es * kv, row * kv});
        }
      }
      // build_attn_mha
      {
        const tensor Q = g.t[q];
        int qv = g.view(op::view, q, {Q.ne[0], Q.ne[1], Q.ne[2] / ns, ns},
                        {Q.nb[0], Q.nb[1], Q.nb[2], Q.nb[3] / ns});
        qv = g.permute(qv, 0, 2, 1, 3);
        int kp = g.permute(kview, 0, 2, 1, 3);
        int vp = g.permute(vview, 0, 2, 1, 3);
        if (fa) {
          const tensor QP = g.t[qv];
          int o = g.make(op::flash_attn, dtype::f32, {g.t[vp].ne[0], QP.ne[2], QP.ne[1], QP.ne[3]},
                         {qv, kp, vp, mask});
          cur = g.reshape(o, {g.t[o].ne[0] * g.t[o].ne[1], g.t[o].ne[2] * g.t[o].ne[3], 1, 1});
        } else {
          const tensor QP = g.t[qv];
          int kq = g.make(op::mul_mat, dtype::f32, {g.t[kp].ne[1], QP.ne[1], QP.ne[2], QP.ne[3]}, {kp, qv});
          kq = g.same_as(op::soft_max, kq, {kq, mask});
          const tensor KQ = g.t[kq];
          int kqv = g.make(op::mul_mat, dtype::f32, {g.t[vp].ne[1], KQ.ne[1], KQ.ne[2], KQ.ne[3]}, {vp, kq});
          int p = g.permute(kqv, 0, 2, 1, 3);
          const tensor P = g.t[p];
          cur = g.make(op::cont, dtype::f32, {P.ne[0] * P.ne[1], P.ne[2] * P.ne[3], 1, 1}, {p});
          if (s.kv_on_host) g.t[cur].forced = cpu;
        }
        g.expand(cur);
      }
      if (v_rot >= 0) cur = hadamard(cur, v_rot, nrot_v);
      cur = mul_mat(w(L.wo), E, cur);
    }
    if (il == n_layer - 1) {
      cur = g.make(op::get_rows, dtype::f32, {E, s.n_outputs, 1, 1}, {cur, out_ids});
      inpSA = g.make(op::get_rows, dtype::f32, {E, s.n_outputs, 1, 1}, {inpSA, out_ids});
    }
    int ffn_inp = g.same_as(op::add, cur, {cur, inpSA});
    cur = norm(ffn_inp, L.ffn_norm, il);
    const std::int64_t n = g.t[cur].ne[1];
    auto dense_ffn = [&](int x, layer_weights::w wu, layer_weights::w wg, layer_weights::w wd,
                         std::int64_t ff) {
      int up = mul_mat(w(wu), ff, x);
      int gate = mul_mat(w(wg), ff, x);
      int act = g.same_as(op::glu, gate, {gate, up});
      return mul_mat(w(wd), E, act);
    };
    if (!s.moe || !L.moe) {
      cur = dense_ffn(cur, L.up, L.gate, L.down, s.n_ff);
    } else {
      // llm_graph_context::build_moe_ffn
      const std::int64_t ne = s.n_expert, nu = s.n_expert_used, ff = s.n_ff_exp;
      const int ffn_in = cur;
      int logits = mul_mat(w(L.gate_inp), ne, cur);
      if (L.gate_inp_b.bytes) logits = g.same_as(op::add, logits, {logits, w(L.gate_inp_b)});
      int probs = logits;
      if (s.gating_op == compute_graph_spec::gating::softmax)
        probs = g.make(op::soft_max, dtype::f32, {ne, n, 1, 1}, {logits});
      else if (s.gating_op == compute_graph_spec::gating::sigmoid)
        probs = g.make(op::unary, dtype::f32, {ne, n, 1, 1}, {logits});
      int selection = probs;
      if (L.exp_probs_b.bytes)
        selection = g.make(op::add, dtype::f32, {ne, n, 1, 1}, {probs, w(L.exp_probs_b)});
      int sorted = g.make(op::argsort, dtype::i32, {ne, n, 1, 1}, {selection});
      const tensor S = g.t[sorted];
      int selected = g.view(op::view, sorted, {nu, n, 1, 1}, S.nb);
      int p3 = g.reshape(probs, {1, ne, n, 1});
      int weights = g.make(op::get_rows, dtype::f32, {1, nu, n, 1}, {p3, selected});
      if (s.gating_op == compute_graph_spec::gating::softmax_weight) {
        weights = g.reshape(weights, {nu, n, 1, 1});
        weights = g.same_as(op::soft_max, weights, {weights});
        weights = g.reshape(weights, {1, nu, n, 1});
      }
      if (s.norm_weights) {
        weights = g.reshape(weights, {nu, n, 1, 1});
        int sum = g.make(op::sum_rows, dtype::f32, {1, n, 1, 1}, {weights});
        {
          tensor x = g.t[sum];  // ggml_clamp returns a view of its input
          x.o = op::clamp;
          x.src = {sum, -1, -1, -1, -1};
          x.view_src = g.root(sum);
          sum = g.add(x);
        }
        weights = g.same_as(op::div, weights, {weights, sum});
        weights = g.reshape(weights, {1, nu, n, 1});
      }
      g.expand(weights);
      int x3 = g.reshape(cur, {E, 1, n, 1});
      auto biased = [&](int t, layer_weights::w b) {
        return b.bytes ? g.same_as(op::add_id, t, {t, w(b), selected}) : t;
      };
      int up = biased(g.make(op::mul_mat_id, dtype::f32, {ff, nu, n, 1}, {w(L.up_exps), x3, selected}),
                      L.up_exps_b);
      int gate = biased(g.make(op::mul_mat_id, dtype::f32, {ff, nu, n, 1}, {w(L.gate_exps), x3, selected}),
                        L.gate_exps_b);
      int act = g.same_as(op::glu, gate, {gate, up});
      int experts = biased(g.make(op::mul_mat_id, dtype::f32, {E, nu, n, 1}, {w(L.down_exps), act, selected}),
                           L.down_exps_b);
      experts = g.same_as(op::mul, experts, {experts, weights});
      g.expand(experts);
      const tensor X = g.t[experts];
      std::vector<int> views;
      for (std::int64_t i = 0; i < nu; ++i) {
        int vw = g.view(op::view, experts, {E, n, 1, 1}, {X.nb[0], X.nb[2], X.nb[2] * n, X.nb[2] * n});
        g.expand(vw);
        views.push_back(vw);
      }
      int out = views[0];
      for (std::size_t i = 1; i < views.size(); ++i) {
        out = g.make(op::add, dtype::f32, {E, n, 1, 1}, {out, views[i]});
        g.expand(out);
      }
      if (views.size() == 1) out = g.make(op::cont, dtype::f32, {E, n, 1, 1}, {out});
      cur = out;
      if (L.up_shexp.bytes && s.n_ff_shexp > 0) {
        int shexp = dense_ffn(ffn_in, L.up_shexp, L.gate_shexp, L.down_shexp, s.n_ff_shexp);
        if (L.gate_inp_shexp.bytes) {
          int sg = mul_mat(w(L.gate_inp_shexp), 1, ffn_in);
          sg = g.same_as(op::unary, sg, {sg});
          shexp = g.same_as(op::mul, shexp, {shexp, sg});
        }
        cur = g.same_as(op::add, cur, {cur, shexp});
      }
    }
    cur = g.same_as(op::add, cur, {cur, ffn_inp});
    inpL = cur;
  }
  int embd = norm(inpL, s.output_norm, -1);
  g.t[embd].flags |= k_output;
  int logits = mul_mat(w(s.output), s.n_vocab, embd);
  g.t[logits].flags |= k_output;
  g.expand(logits);
}

// ---------------------------------------------------------------------------------------------
// ggml_backend_sched_split_graph: backend per node, splits, copies of inputs that cross backends.

struct sched_result {
  std::vector<int> nodes, node_backend, leafs, leaf_backend;
};

std::int64_t op_batch(const tensor& x) {
  switch (x.o) {
    case op::get_rows:
      return 0;
    case op::mul_mat:
      return x.ne[1];
    case op::mul_mat_id:
    case op::rope:
      return x.ne[2];
    default:
      return x.ne[1] * x.ne[2] * x.ne[3];
  }
}

sched_result schedule(graph& g, const compute_graph_spec& s, int cpu) {
  const int n_backends = cpu + 1;
  const int n_copies = s.pipeline_parallel ? 4 : 1;
  auto& t = g.t;
  auto from_cur = [&](int id) -> int {
    const tensor& x = t[id];
    if (x.buffer >= 0) return x.buffer;  // pre-allocated (weight, KV cache) or a view of one
    if (x.flags & k_input) return cpu;
    if (x.o == op::rope || x.o == op::flash_attn) return -1;
    for (int si : x.src) {
      if (si < 0 || !(t[si].flags & k_weight)) continue;
      int b = t[si].buffer;
      if (b == cpu) {
        for (int d = 0; d < s.n_devices; ++d)
          if (d < static_cast<int>(s.offload_ops.size()) && s.offload_ops[d] && op_batch(x) >= 32) return d;
      }
      return b;
    }
    return -1;
  };
  // pass 1
  for (int l : g.leafs) t[l].backend = t[l].forced >= 0 ? t[l].forced : from_cur(l);
  for (int n : g.nodes) t[n].backend = t[n].forced >= 0 ? t[n].forced : from_cur(n);
  // pass 2: expand GPU backends down and up, then any backend down and up
  auto expand = [&](bool down, bool skip_cpu) {
    int cur = -1;
    const int N = static_cast<int>(g.nodes.size());
    for (int k = 0; k < N; ++k) {
      int n = g.nodes[down ? k : N - 1 - k];
      if (is_view_op(t[n].o)) continue;
      if (t[n].backend != -1)
        cur = (skip_cpu && t[n].backend == cpu) ? -1 : t[n].backend;
      else if (cur != -1)
        t[n].backend = cur;
    }
  };
  expand(true, true);
  expand(false, true);
  expand(true, false);
  expand(false, false);
  auto backend_of = [&](int id) {
    if (t[id].backend >= 0) return t[id].backend;
    if (t[id].view_src >= 0) return t[t[id].view_src].backend;
    return -1;
  };
  // pass 3: unassigned nodes go to the backend with the most inputs already there
  for (int n : g.nodes) {
    if (is_view_op(t[n].o) || t[n].backend != -1) continue;
    int best = -1;
    for (int b = 0; b < n_backends; ++b) {
      int c = 0;
      for (int si : t[n].src)
        if (si >= 0 && backend_of(si) == b) ++c;
      if (c > best) {
        best = c;
        t[n].backend = b;
      }
    }
  }
  // pass 4: views and remaining sources
  for (int n : g.nodes) {
    if (t[n].view_src >= 0 && t[n].backend == -1) t[n].backend = t[t[n].view_src].backend;
    for (int si : t[n].src) {
      if (si < 0 || t[si].backend != -1) continue;
      t[si].backend = t[si].view_src >= 0 ? t[t[si].view_src].backend : t[n].backend;
    }
    if (t[n].backend == -1) t[n].backend = 0;
  }
  // pass 5: splits and copies
  struct split {
    int backend = -1, i_start = 0, i_end = 0;
    std::vector<int> inputs;
  };
  std::vector<split> splits;
  // per original tensor: its copies, n_copies per backend, in one pool (copies are never copied)
  const std::size_t stride = static_cast<std::size_t>(n_backends) * n_copies;
  std::vector<int> copy_at(t.size(), -1);
  std::vector<int> pool;
  auto copy_of = [&](int id, int b) -> int* {
    if (static_cast<std::size_t>(id) >= copy_at.size()) copy_at.resize(static_cast<std::size_t>(id) + 1, -1);
    if (copy_at[id] < 0) {
      copy_at[id] = static_cast<int>(pool.size());
      pool.resize(pool.size() + stride, -1);
    }
    return &pool[static_cast<std::size_t>(copy_at[id]) + static_cast<std::size_t>(b) * n_copies];
  };
  auto copy = [&](int id, std::size_t k) { return pool[static_cast<std::size_t>(copy_at[id]) + k]; };
  std::vector<int> graph_inputs;
  const int N = static_cast<int>(g.nodes.size());
  int i = 0;
  split cur_split;
  for (; i < N; ++i)
    if (!is_view_op(t[g.nodes[i]].o)) {
      cur_split.backend = t[g.nodes[i]].backend;
      break;
    }
  int cur_b = cur_split.backend;
  for (; i < N; ++i) {
    int n = g.nodes[i];
    if (is_view_op(t[n].o)) continue;
    const int nb = t[n].backend;
    bool need_new = false;
    if (nb == cur_b && !cur_split.inputs.empty()) {
      for (int si : t[n].src)
        if (si >= 0 && (t[si].flags & k_weight) && t[si].backend != cur_b) need_new = true;
    }
    if (nb != cur_b || need_new) {
      cur_split.i_end = i;
      splits.push_back(std::move(cur_split));
      cur_split = split{};
      cur_split.backend = nb;
      cur_split.i_start = i;
      cur_b = nb;
    }
    for (int j = 0; j < k_max_src; ++j) {
      int si = t[n].src[j];
      if (si < 0) continue;
      const int sb = t[si].backend >= 0 ? t[si].backend : backend_of(si);
      if ((t[si].flags & k_input) && n_copies > 1) {
        int* c = copy_of(si, sb);
        if (c[0] == -1) {
          for (int k = 0; k < n_copies; ++k) {
            int cp = si;
            if (k != 0) {
              tensor x;
              x.type = t[si].type;
              x.ne = t[si].ne;
              x.nb = t[si].nb;
              x.backend = sb;
              cp = g.add(x);
            }
            t[cp].flags |= k_input | k_output;
            copy_of(si, sb)[k] = cp;
          }
          graph_inputs.push_back(si);
        }
      }
      const int buffer_b = t[g.root(si)].buffer >= 0 ? t[g.root(si)].buffer : sb;
      if (sb != cur_b && buffer_b != cur_b) {
        int* c = copy_of(si, cur_b);
        if (c[0] == -1) {
          for (int k = 0; k < n_copies; ++k) {
            tensor x;
            x.type = t[si].type;
            x.ne = t[si].ne;
            x.nb = t[si].nb;
            x.backend = cur_b;
            if (n_copies > 1) x.flags = k_input | k_output;
            int cp = g.add(x);
            copy_of(si, cur_b)[k] = cp;
          }
          cur_split.inputs.push_back(si);
        }
        t[n].src[j] = copy_of(si, cur_b)[0];
      }
    }
  }
  cur_split.i_end = N;
  splits.push_back(std::move(cur_split));

  sched_result r;
  for (const auto& sp : splits) {
    for (int in : sp.inputs) {
      tensor dep;  // ggml_view_tensor(input) with src[0] = input: keeps it alive until the copy
      dep.type = t[in].type;
      dep.ne = t[in].ne;
      dep.nb = t[in].nb;
      dep.view_src = g.root(in);
      dep.src[0] = in;
      int d = g.add(dep);
      r.nodes.push_back(d);
      r.node_backend.push_back(backend_of(in));
      int cp = copy(in, static_cast<std::size_t>(sp.backend) * n_copies);
      r.nodes.push_back(cp);
      r.node_backend.push_back(sp.backend);
    }
    for (int k = sp.i_start; k < sp.i_end; ++k) {
      r.nodes.push_back(g.nodes[k]);
      r.node_backend.push_back(t[g.nodes[k]].backend);
    }
  }
  if (n_copies > 1) {
    for (int in : graph_inputs) {
      int b = t[in].backend;
      for (int k = 0; k < n_copies; ++k) {
        r.leafs.push_back(copy(in, static_cast<std::size_t>(b) * n_copies + k));
        r.leaf_backend.push_back(b);
      }
    }
    for (const auto& sp : splits)
      for (int in : sp.inputs)
        for (int k = 0; k < n_copies; ++k) {
          r.leafs.push_back(copy(in, static_cast<std::size_t>(sp.backend) * n_copies + k));
          r.leaf_backend.push_back(sp.backend);
        }
  }
  for (int l : g.leafs) {
    r.leafs.push_back(l);
    r.leaf_backend.push_back(t[l].backend);
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// ggml-alloc: ggml_gallocr_alloc_graph_impl over the scheduler's graph copy, one dynamic allocator
// (ggml_dyn_tallocr) per backend buffer.

struct dyn_alloc {
  std::uint64_t align = 32;  // the buffer type's alignment: 32 CPU and RPC, 128 CUDA / ROCm
  std::uint64_t align_up(std::uint64_t x) const { return (x + align - 1) / align * align; }
  struct block {
    std::uint64_t offset, size;
  };
  std::vector<block> free;  // sorted by offset; the last one is the unbounded tail
  std::uint64_t max_size = 0;
  dyn_alloc() { free.push_back({0, std::numeric_limits<std::uint64_t>::max() / 2}); }

  std::uint64_t alloc(std::uint64_t size) {
    size = align_up(size);
    int best = -1;
    std::uint64_t best_size = std::numeric_limits<std::uint64_t>::max();
    for (int i = 0; i + 1 < static_cast<int>(free.size()); ++i)
      if (free[i].size >= size && free[i].size <= best_size) {
        best = i;
        best_size = free[i].size;
      }
    if (best == -1) best = static_cast<int>(free.size()) - 1;
    auto& b = free[best];
    std::uint64_t off = b.offset;
    b.offset += size;
    b.size -= size;
    if (b.size == 0) free.erase(free.begin() + best);
    max_size = std::max(max_size, off + size);
    return off;
  }
  void release(std::uint64_t off, std::uint64_t size) {
    size = align_up(size);
    for (std::size_t i = 0; i < free.size(); ++i) {
      auto& b = free[i];
      if (b.offset + b.size == off) {
        b.size += size;
        if (i + 1 < free.size() && b.offset + b.size == free[i + 1].offset) {
          b.size += free[i + 1].size;
          free.erase(free.begin() + static_cast<long>(i) + 1);
        }
        return;
      }
      if (off + size == b.offset) {
        b.offset = off;
        b.size += size;
        if (i > 0 && free[i - 1].offset + free[i - 1].size == b.offset) {
          free[i - 1].size += b.size;
          free.erase(free.begin() + static_cast<long>(i));
        }
        return;
      }
    }
    auto pos = std::lower_bound(free.begin(), free.end(), off,
                                [](const block& b, std::uint64_t o) { return b.offset < o; });
    free.insert(pos, block{off, size});
  }
};

std::vector<std::uint64_t> allocate(graph& g, const sched_result& r, int n_backends,
                                    const std::vector<std::uint64_t>& alignment) {
  auto& t = g.t;
  struct hnode {
    int n_children = 0, n_views = 0, buffer = -1;
    std::uint64_t offset = 0;
    bool allocated = false;
  };
  std::vector<hnode> h(t.size());
  std::vector<dyn_alloc> bufs(n_backends);
  for (int b = 0; b < n_backends && b < static_cast<int>(alignment.size()); ++b)
    if (alignment[b]) bufs[b].align = alignment[b];
  auto is_view = [&](int id) { return t[id].view_src >= 0; };
  auto own = [&](int id) { return h[id].allocated; };
  auto allocated = [&](int id) { return t[id].buffer >= 0 && !is_view(id) ? true : own(id); };
  auto same_layout = [&](int a, int b) {
    return t[a].type == t[b].type && t[a].ne == t[b].ne && t[a].nb == t[b].nb;
  };
  auto alloc_node = [&](int id, int buffer) {
    if (allocated(id) || is_view(id)) return;
    h[id].allocated = true;
    if (can_inplace(t[id].o)) {
      for (int p : t[id].src) {
        if (p < 0 || !own(p)) continue;
        if (t[p].flags & k_output) continue;
        if (!same_layout(id, p)) continue;
        if (h[p].n_children == 1 && h[p].n_views == 0) {
          h[id].buffer = h[p].buffer;
          h[id].offset = h[p].offset;
          h[p].allocated = false;
          return;
        }
      }
    }
    h[id].buffer = buffer;
    h[id].offset = bufs[buffer].alloc(nbytes(t[id]));
  };
  auto free_node = [&](int id) {
    if (t[id].flags & k_output) return;
    bufs[h[id].buffer].release(h[id].offset, nbytes(t[id]));
    h[id].allocated = false;
  };
  for (std::size_t i = 0; i < r.leafs.size(); ++i) alloc_node(r.leafs[i], r.leaf_backend[i]);
  for (std::size_t i = 0; i < r.nodes.size(); ++i) {
    int n = r.nodes[i];
    if (is_view(n) && t[n].o != op::none) h[t[n].view_src].n_views += 1;
    if (t[n].flags & k_input) alloc_node(n, r.node_backend[i]);
    for (int si : t[n].src) {
      if (si < 0) continue;
      h[si].n_children += 1;
      if (t[si].flags & k_input) alloc_node(si, r.node_backend[i]);
    }
  }
  for (std::size_t i = 0; i < r.nodes.size(); ++i) {
    int n = r.nodes[i];
    for (int si : t[n].src)
      if (si >= 0) alloc_node(si, r.node_backend[i]);
    alloc_node(n, r.node_backend[i]);
    for (int p : t[n].src) {
      if (p < 0) continue;
      auto& ph = h[p];
      ph.n_children -= 1;
      if (ph.n_children == 0 && ph.n_views == 0) {
        if (is_view(p)) {
          int vs = t[p].view_src;
          h[vs].n_views -= 1;
          if (h[vs].n_views == 0 && h[vs].n_children == 0 && h[vs].allocated) free_node(vs);
        } else if (ph.allocated) {
          free_node(p);
        }
      }
    }
  }
  std::vector<std::uint64_t> out(n_backends);
  for (int b = 0; b < n_backends; ++b) out[b] = bufs[b].max_size;
  return out;
}

}  // namespace

std::vector<std::uint64_t> simulate_compute_buffers(const compute_graph_spec& spec) {
  const int cpu = spec.n_devices;
  graph g;
  g.t.reserve(spec.layers.size() * 64 + 64);
  build_graph(spec, g, cpu);
  auto r = schedule(g, spec, cpu);
  return allocate(g, r, cpu + 1, spec.device_alignment);
}

}  // namespace agifarm::plan
