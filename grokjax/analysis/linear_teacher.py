"""The solvable linear model of grokking (Levi, Beck and Bar-Sinai, "Grokking in linear estimators", 2023), as
Miller, Gleeson et al. use it in "Measuring sharpness in grokking": a linear student trained by gradient descent
on a linear teacher's outputs, in closed form and simulated.

Setup (one run): inputs x ~ N(0, I_{d_in}); a teacher T (d_out, d_in) with entries N(0, 1/d_in), so outputs
y = T x (+ noise N(0, noise^2) per output) have unit variance; a student S (d_out, d_in) starting at S_0 with
entries N(0, init_scale^2 / d_in) (0: at zero). The loss of one example is l(x) = ||S x - y||^2 / d_out; the
training loss L = mean over the N training examples. lambda = d_in / N. An example counts as correct when
l(x) < epsilon (the papers' loss-threshold accuracy); chance is then 0.

Gradient descent with learning rate eta, S <- S - eta grad L, and the gradient flow it approximates, at time
t = eta x steps: dS/dt = -c (S Sigma - C), c = 2 / d_out, Sigma = X^T X / N the training covariance and
C = Y^T X / N. With Sigma = V diag(mu) V^T, in closed form

    S(t) V = S_0 V e^{-c mu t} + C V (1 - e^{-c mu t}) / mu        (the last factor is c t where mu = 0),

and for noiseless labels the papers' losses through the eigenvalues, with D_0 = S_0 - T:

    L_train(t) = (1 / d_out) sum_k mu_k e^{-2 c mu_k t} ||D_0 v_k||^2
    L_test(t)  = (1 / d_out) sum_k       e^{-2 c mu_k t} ||D_0 v_k||^2   (the population: E x x^T = I).

Gradient descent follows the same modes with e^{-c mu t} replaced by (1 - eta c mu)^steps: the simulated curves
meet the closed form as eta -> 0. Accuracies are measured on the N training examples and on `n_test` fresh ones.

Runs are vmapped over seeds and lambdas in one program: d_in is fixed and every run draws `n_max` training rows
(the most any lambda needs) from its key, of which the first N count (a mask), so the arrays have one shape.
"""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from grokjax.errors import UserError
from grokjax.specs import Spec


@dataclass(frozen=True)
class LinearTeacher(Spec):
    """One run's task and training (see the module): sizes, label noise, the student's initial scale, the accuracy
    threshold epsilon, the learning rate, the number of optimizer steps and of logs (`log_steps`)."""

    d_in: int = 300
    d_out: int = 1
    n_test: int = 1000
    noise: float = 0.0
    init_scale: float = 0.0
    epsilon: float = 1e-2
    lr: float = 0.05
    steps: int = 100000
    n_logs: int = 200

    def __post_init__(self):
        for name in ("d_in", "d_out", "n_test", "steps", "n_logs"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise UserError(f"The linear teacher's {name.replace('_', ' ')} must be a positive integer, got {value!r}.")
        for name in ("noise", "init_scale"):
            if not (isinstance(getattr(self, name), (int, float)) and getattr(self, name) >= 0):
                raise UserError(f"The linear teacher's {name.replace('_', ' ')} must be a non-negative number.")
        if not self.epsilon > 0:
            raise UserError(f"The accuracy threshold epsilon must be positive, got {self.epsilon}.")
        if not self.lr > 0:
            raise UserError(f"The learning rate must be positive, got {self.lr}.")

    def check_stable(self, lambdas) -> None:
        """UserError unless gradient descent is stable at every lambda: lr c mu_max < 2 with c = 2 / d_out and mu_max
        the Marchenko-Pastur upper edge (1 + sqrt(lambda))^2, with 10% to spare for finite sizes."""
        top = max((1 + float(lam) ** 0.5) ** 2 for lam in lambdas) * 1.1
        if self.lr * 2 / self.d_out * top >= 2:
            raise UserError(f"The learning rate {self.lr} is too large for gradient descent at lambda up to "
                            f"{max(lambdas):g}: it must be below {self.d_out / top:.3g} (d_out / (1.1 (1 + sqrt(lambda))^2)).")

    def n_train(self, lam: float) -> int:
        """Training examples for lambda = d_in / N: the nearest integer to d_in / lambda."""
        return max(1, int(round(self.d_in / lam)))

    def log_steps(self) -> np.ndarray:
        """The optimizer steps at which metrics are taken: 0, about n_logs / 2 geometric from 1 to `steps` and
        n_logs / 2 evenly spaced up to `steps` (distinct integers, increasing). Geometric logs resolve the early
        rise of training accuracy, even ones give the late rise of test accuracy its weight in a fit in time."""
        half = max(self.n_logs // 2, 1)
        return np.unique(np.concatenate([[0], np.round(np.geomspace(1, self.steps, half)),
                                         np.round(np.linspace(0, self.steps, half + 1))])).astype(np.int64)


def sample(key, task: LinearTeacher, n_max: int) -> dict:
    """One run's draw from its key: training inputs (n_max, d_in) and labels, test inputs and labels, teacher and
    initial student. Draws use `fold_in(key, i)` per array, so they do not depend on each other's sizes."""
    k = lambda i: jax.random.fold_in(key, i)
    d, o = task.d_in, task.d_out
    teacher = jax.random.normal(k(0), (o, d)) / jnp.sqrt(d)
    x = jax.random.normal(k(1), (n_max, d))
    x_test = jax.random.normal(k(2), (task.n_test, d))
    y = x @ teacher.T + task.noise * jax.random.normal(k(3), (n_max, o))
    y_test = x_test @ teacher.T + task.noise * jax.random.normal(k(4), (task.n_test, o))
    s0 = task.init_scale * jax.random.normal(k(5), (o, d)) / jnp.sqrt(d)
    return {"x": x, "y": y, "x_test": x_test, "y_test": y_test, "teacher": teacher, "s0": s0}


def example_losses(s, x, y):
    """l(x) = ||S x - y||^2 / d_out of every example (rows of x, y)."""
    return jnp.mean((x @ s.T - y) ** 2, axis=-1)


def metrics(s, draw, mask, epsilon):
    """(train loss, test loss, train accuracy, test accuracy) of student `s`: means over the masked training rows
    and over the test set; accuracy is the share of examples with loss below epsilon."""
    train = example_losses(s, draw["x"], draw["y"])
    test = example_losses(s, draw["x_test"], draw["y_test"])
    n = jnp.sum(mask)
    return (jnp.sum(mask * train) / n, jnp.mean(test), jnp.sum(mask * (train < epsilon)) / n,
            jnp.mean(test < epsilon))


def covariances(draw, mask):
    """Sigma = X^T X / N and C = Y^T X / N over the masked training rows."""
    n = jnp.sum(mask)
    xm = draw["x"] * mask[:, None]
    return xm.T @ draw["x"] / n, (draw["y"] * mask[:, None]).T @ draw["x"] / n


def spectrum(draw, mask):
    """Eigenvalues (ascending) and eigenvectors of Sigma, and C. With N < d_in the d_in - N smallest eigenvalues are
    exactly zero (no training input spans those directions); eigh gives them as float32 rounding of about 1e-7 of
    either sign, which would decay the unlearnable directions and floor the training loss, so they are set to 0."""
    sigma, c_mat = covariances(draw, mask)
    mu, v = jnp.linalg.eigh(sigma)
    null = jnp.arange(len(mu)) < len(mu) - jnp.sum(mask)
    return jnp.where(null, 0.0, jnp.maximum(mu, 0.0)), v, c_mat


def _phi(z):
    """(1 - e^{-z}) / z, 1 at z = 0, without cancellation."""
    safe = jnp.where(z > 1e-6, z, 1.0)
    return jnp.where(z > 1e-6, -jnp.expm1(-safe) / safe, 1 - z / 2)


def closed_form_student(draw, mask, task: LinearTeacher, times):
    """S(t) of gradient flow at every time of `times` (T,) (time = lr x steps): (T, d_out, d_in)."""
    mu, v, c_mat = spectrum(draw, mask)
    c = 2.0 / task.d_out
    a0, b = draw["s0"] @ v, c_mat @ v

    def at(t):
        z = c * mu * t
        return (a0 * jnp.exp(-z) + b * (c * t) * _phi(z)) @ v.T

    return jax.vmap(at)(times)


def eigen_losses(draw, mask, task: LinearTeacher, times):
    """The papers' closed-form losses through the eigenvalues of Sigma (noiseless labels): (train (T,), population
    test (T,))."""
    mu, v, _ = spectrum(draw, mask)
    weight = jnp.sum((draw["s0"] - draw["teacher"]) @ v * ((draw["s0"] - draw["teacher"]) @ v), axis=0) / task.d_out
    decay = jnp.exp(-2 * (2.0 / task.d_out) * mu[None, :] * jnp.asarray(times)[:, None])
    return decay @ (mu * weight), decay @ weight


def closed_form_run(key, n_train, task: LinearTeacher, n_max: int):
    """One run in closed form: metrics (4 arrays (T,), see `metrics`) at `task.log_steps()` x lr, and the eigenvalue
    losses (train, population test)."""
    draw = sample(key, task, n_max)
    mask = (jnp.arange(n_max) < n_train).astype(jnp.float32)
    times = jnp.asarray(task.log_steps() * task.lr, jnp.float32)
    students = closed_form_student(draw, mask, task, times)
    return jax.vmap(lambda s: metrics(s, draw, mask, task.epsilon))(students), eigen_losses(draw, mask, task, times)


def simulated_run(key, n_train, task: LinearTeacher, n_max: int):
    """One run trained by gradient descent on the masked training loss (jax.grad of the mean example loss): metrics
    at `task.log_steps()`, as `closed_form_run`'s."""
    draw = sample(key, task, n_max)
    mask = (jnp.arange(n_max) < n_train).astype(jnp.float32)
    n = jnp.sum(mask)
    loss = lambda s: jnp.sum(mask * example_losses(s, draw["x"], draw["y"])) / n
    grad = jax.grad(loss)
    steps = task.log_steps()
    between = jnp.asarray(np.diff(steps), jnp.int32)

    def segment(s, k):
        s = jax.lax.fori_loop(0, k, lambda _, s: s - task.lr * grad(s), s)
        return s, metrics(s, draw, mask, task.epsilon)

    s_end, trace = jax.lax.scan(segment, draw["s0"], between)
    first = metrics(draw["s0"], draw, mask, task.epsilon)
    return tuple(jnp.concatenate([f[None], t]) for f, t in zip(first, trace))


def teacher_program(task: LinearTeacher, n_max: int):
    """The runner's program: for a batch of runs (keys (runs, 2), training sizes (runs,)), the closed-form metrics,
    the eigenvalue losses and the simulated metrics, vmapped."""

    def one(key, n_train):
        closed, eigen = closed_form_run(key, n_train, task, n_max)
        return {"closed": closed, "eigen": eigen, "simulated": simulated_run(key, n_train, task, n_max)}

    return jax.vmap(one)
