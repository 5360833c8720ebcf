//! The CPU kernels as a burn backend extension: an operation of burn's dispatch backend on flex
//! tensors, and on autodiff-tracked flex tensors with its own backward step (burn's
//! `#[backend_extension]`, the mechanism burn-signal uses for its FFT).

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, NodeGuard, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Flex, TensorMetadata, backend_extension};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Shape, TensorData};

use super::attention::{self, AttentionShape};
use super::conv::{self, ConvShape};
use super::group_norm::{self, Activation, BlockStats, GroupNormShape};
use super::update::{self, AdamWStep};

/// Convolution and group normalisation computed by this crate's kernels. Only flex tensors in
/// f32 are routed here (see [`super::conv2d`] and [`super::group_norm`]); every other device
/// and dtype runs burn's own operations.
#[backend_extension(Flex, Autodiff)]
pub trait CpuKernels: Backend {
    /// A 2-D convolution with a bias, groups 1 and dilation 1 (burn's `conv2d` semantics).
    /// The bias is not optional because the extension macro of burn 0.22 does not route
    /// `Option` tensors; every convolution of diffusers' networks has one.
    fn conv2d_gemm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;

    /// softmax(QKᵀ/√d)V with `heads` heads, on projections laid out [B, N, H·d].
    fn attention_fused(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        heads: usize,
    ) -> FloatTensor<Self>;

    /// act(group_norm(x) · γ + β) over [N, C, …] with `groups` groups.
    fn group_norm_fused(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        epsilon: f64,
        activation: Activation,
    ) -> FloatTensor<Self>;
}

/// The optimiser's and the EMA's parameter updates, one parallel pass each. Parameters are
/// updated outside the autodiff graph, so only flex tensors route here.
#[backend_extension(Flex)]
pub trait CpuUpdates: Backend {
    /// One AdamW step of a flat parameter: (θ, m, v) after it.
    fn adamw_fused(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        first: FloatTensor<Self>,
        second: FloatTensor<Self>,
        step: AdamWStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// θ_ema − (1 − decay)(θ_ema − θ).
    fn ema_fused(
        average: FloatTensor<Self>,
        value: FloatTensor<Self>,
        decay: f64,
    ) -> FloatTensor<Self>;
}

impl CpuUpdates for Flex {
    fn adamw_fused(
        param: FlexTensor,
        grad: FlexTensor,
        first: FlexTensor,
        second: FlexTensor,
        step: AdamWStep,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let [param, grad, first, second] = [&param, &grad, &first, &second].map(contiguous);
        let len = param.shape().num_elements();
        let [p, m, v] = update::adamw(
            values(&param),
            values(&grad),
            [values(&first), values(&second)],
            &step,
        )
        .map(|values| flex_tensor(values, [len]));
        (p, m, v)
    }

    fn ema_fused(average: FlexTensor, value: FlexTensor, decay: f64) -> FlexTensor {
        let (average, value) = (contiguous(&average), contiguous(&value));
        let len = average.shape().num_elements();
        flex_tensor(update::ema(values(&average), values(&value), decay), [len])
    }
}

/// The tensor's values in memory order (copied only when its layout is strided).
fn contiguous(tensor: &FlexTensor) -> FlexTensor {
    if tensor.as_slice::<f32>().is_some() {
        tensor.clone()
    } else {
        tensor.to_contiguous()
    }
}

fn values(tensor: &FlexTensor) -> &[f32] {
    tensor
        .as_slice::<f32>()
        .expect("the kernels are only called on contiguous f32 tensors")
}

fn flex_tensor(values: Vec<f32>, shape: impl Into<Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

fn conv_shape(x: &FlexTensor, weight: &FlexTensor, options: &ConvOptions<2>) -> ConvShape {
    let x = x.shape();
    let w = weight.shape();
    ConvShape::new(
        [x[0], x[1], x[2], x[3]],
        [w[0], w[2], w[3]],
        options.stride,
        options.padding,
    )
    .expect("the caller checked that the kernel fits the padded input")
}

fn group_norm_shape(x: &FlexTensor, groups: usize) -> GroupNormShape {
    let dims = x.shape();
    GroupNormShape {
        batch: dims[0],
        channels: dims[1],
        groups,
        spatial: dims[2..].iter().product(),
    }
}

fn conv2d_flex(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: &FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let shape = conv_shape(x, weight, options);
    let (x, weight, bias) = (contiguous(x), contiguous(weight), contiguous(bias));
    let y = conv::forward(&shape, values(&x), values(&weight), Some(values(&bias)));
    let [out_h, out_w] = shape.output;
    flex_tensor(y, [shape.batch, shape.out_channels, out_h, out_w])
}

fn group_norm_flex(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    groups: usize,
    epsilon: f64,
    activation: Activation,
) -> (FlexTensor, Vec<BlockStats>) {
    let shape = group_norm_shape(x, groups);
    let (x_values, gamma, beta) = (contiguous(x), contiguous(gamma), contiguous(beta));
    let (y, stats) = group_norm::forward(
        &shape,
        values(&x_values),
        values(&gamma),
        values(&beta),
        epsilon,
        activation,
    );
    (flex_tensor(y, x.shape()), stats)
}

fn attention_shape(q: &FlexTensor, heads: usize) -> AttentionShape {
    let dims = q.shape();
    AttentionShape {
        batch: dims[0],
        positions: dims[1],
        heads,
        head_dim: dims[2] / heads,
    }
}

fn attention_flex(
    q: &FlexTensor,
    k: &FlexTensor,
    v: &FlexTensor,
    heads: usize,
) -> (FlexTensor, Vec<f32>) {
    let shape = attention_shape(q, heads);
    let (q_values, k, v) = (contiguous(q), contiguous(k), contiguous(v));
    let (out, lse) = attention::forward(&shape, values(&q_values), values(&k), values(&v));
    (flex_tensor(out, q.shape()), lse)
}

impl CpuKernels for Flex {
    fn conv2d_gemm(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        options: ConvOptions<2>,
    ) -> FlexTensor {
        conv2d_flex(&x, &weight, &bias, &options)
    }

    fn group_norm_fused(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        groups: usize,
        epsilon: f64,
        activation: Activation,
    ) -> FlexTensor {
        group_norm_flex(&x, &gamma, &beta, groups, epsilon, activation).0
    }

    fn attention_fused(q: FlexTensor, k: FlexTensor, v: FlexTensor, heads: usize) -> FlexTensor {
        attention_flex(&q, &k, &v, heads).0
    }
}

/// What the convolution's backward step needs: its input, weights and geometry.
#[derive(Debug, Clone)]
struct ConvState {
    x: FlexTensor,
    weight: FlexTensor,
    options: ConvOptions<2>,
}

#[derive(Debug)]
struct Conv2dGemmBackward;

impl Backward<Flex, 3> for Conv2dGemmBackward {
    type State = ConvState;

    fn backward(self, ops: Ops<ConvState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = contiguous(&grads.consume::<Flex>(&ops.node));
        let ConvState { x, weight, options } = ops.state;
        let shape = conv_shape(&x, &weight, &options);
        let [x_node, weight_node, bias_node] = ops.parents;
        if let Some(node) = x_node {
            let dx = conv::input_grad(&shape, values(&contiguous(&weight)), values(&grad));
            grads.register::<Flex>(node.id, flex_tensor(dx, x.shape()));
        }
        if weight_node.is_none() && bias_node.is_none() {
            return;
        }
        let (dw, db) = conv::weight_grad(&shape, values(&contiguous(&x)), values(&grad));
        if let Some(node) = weight_node {
            grads.register::<Flex>(node.id, flex_tensor(dw, weight.shape()));
        }
        if let Some(node) = bias_node {
            grads.register::<Flex>(node.id, flex_tensor(db, [shape.out_channels]));
        }
    }
}

/// Hands each tracked parent its gradient, `values` shaped as `shapes`.
fn register<const N: usize>(
    grads: &mut Gradients,
    parents: [Option<NodeId>; N],
    values: [Vec<f32>; N],
    shapes: [Shape; N],
) {
    for ((node, values), shape) in parents.into_iter().zip(values).zip(shapes) {
        if let Some(id) = node {
            grads.register::<Flex>(id, flex_tensor(values, shape));
        }
    }
}

/// Registers `output` as computed from `inputs` by `step`, keeping `state` when any input is
/// tracked.
fn record<S, const N: usize, C>(
    step: S,
    inputs: [NodeGuard; N],
    state: S::State,
    output: FlexTensor,
) -> FloatTensor<Autodiff<Flex, C>>
where
    S: Backward<Flex, N>,
    C: CheckpointStrategy,
{
    match step.prepare::<C>(inputs).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(state, output),
        OpsKind::UnTracked(prep) => prep.finish(output),
    }
}

/// What the group normalisation's backward step needs.
#[derive(Debug, Clone)]
struct GroupNormState {
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    stats: Vec<BlockStats>,
    groups: usize,
    activation: Activation,
}

#[derive(Debug)]
struct GroupNormBackward;

impl Backward<Flex, 3> for GroupNormBackward {
    type State = GroupNormState;

    fn backward(self, ops: Ops<GroupNormState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = contiguous(&grads.consume::<Flex>(&ops.node));
        let state = ops.state;
        let shape = group_norm_shape(&state.x, state.groups);
        let (x, gamma, beta) = (
            contiguous(&state.x),
            contiguous(&state.gamma),
            contiguous(&state.beta),
        );
        let (dx, dgamma, dbeta) = group_norm::backward(
            &shape,
            values(&x),
            &state.stats,
            values(&gamma),
            values(&beta),
            values(&grad),
            state.activation,
        );
        let shapes = [&state.x, &state.gamma, &state.beta].map(|t| t.shape());
        let parents = ops.parents.map(|node| node.map(|node| node.id));
        register(grads, parents, [dx, dgamma, dbeta], shapes);
    }
}

/// What the attention's backward step needs: its inputs, output and row log-sum-exps.
#[derive(Debug, Clone)]
struct AttentionState {
    inputs: [FlexTensor; 3],
    output: FlexTensor,
    lse: Vec<f32>,
    heads: usize,
}

#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 3> for AttentionBackward {
    type State = AttentionState;

    fn backward(self, ops: Ops<AttentionState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = contiguous(&grads.consume::<Flex>(&ops.node));
        let state = ops.state;
        let shape = attention_shape(&state.inputs[0], state.heads);
        let inputs = state.inputs.each_ref().map(contiguous);
        let output = contiguous(&state.output);
        let input_grads = attention::backward(
            &shape,
            inputs.each_ref().map(values),
            values(&output),
            &state.lse,
            values(&grad),
        );
        let shape = state.output.shape();
        let parents = ops.parents.map(|node| node.map(|node| node.id));
        register(grads, parents, input_grads, [(); 3].map(|_| shape.clone()));
    }
}

impl<C: CheckpointStrategy> CpuKernels for Autodiff<Flex, C> {
    fn conv2d_gemm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        let output = conv2d_flex(
            x.primitive(),
            weight.primitive(),
            bias.primitive(),
            &options,
        );
        let state = ConvState {
            x: x.primitive().clone(),
            weight: weight.primitive().clone(),
            options,
        };
        record::<_, 3, C>(
            Conv2dGemmBackward,
            [x.node(), weight.node(), bias.node()],
            state,
            output,
        )
    }

    fn group_norm_fused(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        epsilon: f64,
        activation: Activation,
    ) -> FloatTensor<Self> {
        let (output, stats) = group_norm_flex(
            x.primitive(),
            gamma.primitive(),
            beta.primitive(),
            groups,
            epsilon,
            activation,
        );
        let state = GroupNormState {
            x: x.primitive().clone(),
            gamma: gamma.primitive().clone(),
            beta: beta.primitive().clone(),
            stats,
            groups,
            activation,
        };
        record::<_, 3, C>(
            GroupNormBackward,
            [x.node(), gamma.node(), beta.node()],
            state,
            output,
        )
    }

    fn attention_fused(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        heads: usize,
    ) -> FloatTensor<Self> {
        let (output, lse) = attention_flex(q.primitive(), k.primitive(), v.primitive(), heads);
        let state = AttentionState {
            inputs: [q.primitive(), k.primitive(), v.primitive()].map(Clone::clone),
            output: output.clone(),
            lse,
            heads,
        };
        record::<_, 3, C>(
            AttentionBackward,
            [q.node(), k.node(), v.node()],
            state,
            output,
        )
    }
}
