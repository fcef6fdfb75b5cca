package bandwidth

import (
	"encoding/json"
	"math"

	"github.com/knit-cni/knit/pkg/cni"
)

// Limits are the four shaping values, as in the reference plugin: rates in
// bits per second, bursts in bits. A direction is shaped when its rate is
// set; rate and burst go together.
type Limits struct {
	IngressRate  uint64 `json:"ingressRate,omitempty"`
	IngressBurst uint64 `json:"ingressBurst,omitempty"`
	EgressRate   uint64 `json:"egressRate,omitempty"`
	EgressBurst  uint64 `json:"egressBurst,omitempty"`
}

// Ingress reports whether traffic toward the container is shaped.
func (l Limits) Ingress() bool { return l.IngressRate > 0 }

// Egress reports whether traffic from the container is shaped.
func (l Limits) Egress() bool { return l.EgressRate > 0 }

// Config is the bandwidth plugin's configuration.
type Config struct {
	cni.NetConf
	// Limits is what applies: the top-level keys when any of them is given,
	// else runtimeConfig.bandwidth (the reference's precedence).
	Limits Limits `json:"-"`
}

// rawConfig holds the keys as they appear, so "given" can be told from zero.
type rawConfig struct {
	IngressRate   *uint64 `json:"ingressRate"`
	IngressBurst  *uint64 `json:"ingressBurst"`
	EgressRate    *uint64 `json:"egressRate"`
	EgressBurst   *uint64 `json:"egressBurst"`
	RuntimeConfig struct {
		Bandwidth *Limits `json:"bandwidth"`
	} `json:"runtimeConfig"`
}

func val(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}

// parseConfig decodes and validates the configuration. It changes nothing.
func parseConfig(stdin []byte) (*Config, error) {
	c := &Config{}
	if err := json.Unmarshal(stdin, &c.NetConf); err != nil {
		return nil, cni.NewError(cni.ErrDecodingFailure, "failed to parse bandwidth configuration", err.Error())
	}
	var raw rawConfig
	if err := json.Unmarshal(stdin, &raw); err != nil {
		return nil, cni.NewError(cni.ErrDecodingFailure, "failed to parse bandwidth configuration",
			err.Error()+" (rates are bits/s and bursts bits, as non-negative integers)")
	}
	if raw.IngressRate != nil || raw.IngressBurst != nil || raw.EgressRate != nil || raw.EgressBurst != nil {
		c.Limits = Limits{val(raw.IngressRate), val(raw.IngressBurst), val(raw.EgressRate), val(raw.EgressBurst)}
	} else if raw.RuntimeConfig.Bandwidth != nil {
		c.Limits = *raw.RuntimeConfig.Bandwidth
	}
	if err := validate("ingress", c.Limits.IngressRate, c.Limits.IngressBurst); err != nil {
		return nil, err
	}
	if err := validate("egress", c.Limits.EgressRate, c.Limits.EgressBurst); err != nil {
		return nil, err
	}
	return c, nil
}

// validate checks one direction's rate and burst can become a TBF qdisc.
func validate(dir string, rate, burst uint64) error {
	switch {
	case rate == 0 && burst == 0:
		return nil
	case rate == 0:
		return cni.Errorf(cni.ErrInvalidNetworkConfig,
			"%sBurst is set but %sRate is not: set both (rate in bits/s, burst in bits) or neither", dir, dir)
	case burst == 0:
		return cni.Errorf(cni.ErrInvalidNetworkConfig,
			"%sRate is set but %sBurst is not: set both (rate in bits/s, burst in bits) or neither", dir, dir)
	case rate < 8:
		return cni.Errorf(cni.ErrInvalidNetworkConfig,
			"%sRate %d bits/s is below one byte per second: use at least 8", dir, rate)
	case burst/8 >= math.MaxUint32:
		return cni.Errorf(cni.ErrInvalidNetworkConfig,
			"%sBurst %d bits is too large: the burst in bytes must fit in 32 bits (under 4 GiB)", dir, burst)
	}
	if _, err := deriveTBF(rate, burst); err != nil {
		return cni.Errorf(cni.ErrInvalidNetworkConfig, "%s limits cannot be shaped: %v", dir, err)
	}
	return nil
}
