"""The solvable linear model of grokking (Levi et al.), in closed form and simulated, and how sharp its grokking is
(Miller, Gleeson et al., "Measuring sharpness in grokking").

    python experiments/linear_teacher.py --out results/linear                    # lambda = d_in / N from 1.003 to 1.1
    python experiments/linear_teacher.py --out results/linear_n --ratio n_over_d # N / d_in from 1.003 to 1.1 instead
    python experiments/figures.py results/linear                                 # draw again from the saved arrays

A linear student S is trained by gradient descent on the squared loss of a linear teacher's outputs y = T x,
x ~ N(0, I); an example counts as correct when its loss ||S x - y||^2 / d_out is below epsilon. Every (lambda, seed)
is computed twice in one program: the closed-form gradient flow through the eigenvalues of the training
covariance, and gradient descent itself. Each training and test accuracy curve is then fitted with
A(t) = a erf(s (t - t*)) + b (chance 0: a = b = 1/2) in time t = lr x steps, and the relative grokking gap, relative and
absolute sharpness are gathered per lambda into OUT/sharpness_closed.npz and OUT/sharpness_simulated.npz; the
figures go to OUT/figures. With d_in > N (lambda > 1) the student never learns the d_in - N directions no training
input spans, so the test loss stops at about (1 - 1/lambda) of its start: test accuracy reaches the midpoint only
while that is below epsilon; --ratio n_over_d takes the values as N / d_in, where the test loss goes to zero.
"""

import argparse

from grokjax.analysis.linear_teacher import LinearTeacher
from grokjax.cli import add_run_options, draw_figures, run_cli
from grokjax.run.fits import add_fit_options
from grokjax.run.linear_teacher import PAPER_LAMBDAS, RATIOS, run_linear_teacher

D = LinearTeacher()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="directory for the results")
    p.add_argument("--lambdas", type=float, nargs="+", default=list(PAPER_LAMBDAS), metavar="L",
                   help="values of lambda (default: %(default)s)")
    p.add_argument("--ratio", choices=RATIOS, default="d_over_n",
                   help="what the values are: d_over_n, lambda = d_in / N; n_over_d, N / d_in (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per lambda (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="base seed (seed i: fold_in(seed, i))")
    p.add_argument("--d-in", type=int, default=D.d_in, help="input dimension (default: %(default)s)")
    p.add_argument("--d-out", type=int, default=10, help="output dimension (default: %(default)s)")
    p.add_argument("--n-test", type=int, default=D.n_test, help="test examples (default: %(default)s)")
    p.add_argument("--noise", type=float, default=D.noise, help="label noise std (default: %(default)s)")
    p.add_argument("--init-scale", type=float, default=D.init_scale,
                   help="student init N(0, scale^2 / d_in) (default: %(default)s, at zero)")
    p.add_argument("--epsilon", type=float, default=D.epsilon, help="accuracy threshold on the loss (default: %(default)s)")
    p.add_argument("--lr", type=float, default=1.0, help="gradient descent learning rate (default: %(default)s)")
    p.add_argument("--steps", type=int, default=100000, help="gradient descent steps (default: %(default)s)")
    p.add_argument("--n-logs", type=int, default=300, help="about this many logs, half geometric, half even "
                                                           "(default: %(default)s)")
    add_fit_options(p)
    p.add_argument("--runs-per-call", type=int, default=None, help="runs per compiled call (default: the runner's)")
    add_run_options(p, "replace results saved by an earlier run", workers=1, figures=True)
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    run_linear_teacher(a)
    if not a.no_figures:
        draw_figures(a.out)


if __name__ == "__main__":
    run_cli(main)
