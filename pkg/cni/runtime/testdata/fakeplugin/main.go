// Command fakeplugin is the runtime tests' fake CNI plugin. Linked under
// any name, it records each invocation (command, CNI_* env, stdin) as a
// JSON line in the file named by its config's "fake.log" and behaves as
// "fake.on.<COMMAND>" says. A name containing "legacy" does not know
// VERSION; one containing "old" supports only 0.3.1.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	os.Exit(fakePlugin())
}

type fakeAction struct {
	Result      json.RawMessage `json:"result,omitempty"`
	Passthrough bool            `json:"passthrough,omitempty"`
	ErrCode     uint            `json:"errCode,omitempty"`
	ErrMsg      string          `json:"errMsg,omitempty"`
	Stderr      string          `json:"stderr,omitempty"`
	Stdout      string          `json:"stdout,omitempty"`
	Exit        int             `json:"exit,omitempty"`
	SleepMS     int             `json:"sleepMS,omitempty"`
	Silent      bool            `json:"silent,omitempty"` // print nothing on stdout
}

type fakeConf struct {
	Fake struct {
		Log string                `json:"log"`
		On  map[string]fakeAction `json:"on"`
	} `json:"fake"`
	PrevResult json.RawMessage `json:"prevResult"`
}

type record struct {
	Plugin  string            `json:"plugin"`
	Command string            `json:"command"`
	Env     map[string]string `json:"env"` // CNI_* variables present
	Stdin   json.RawMessage   `json:"stdin"`
	Start   time.Time         `json:"start"`
	End     time.Time         `json:"end"`
}

func fakePlugin() int {
	name := filepath.Base(os.Args[0])
	cmd := os.Getenv("CNI_COMMAND")
	stdin, _ := io.ReadAll(os.Stdin)
	if cmd == "VERSION" {
		if strings.Contains(name, "legacy") {
			fmt.Println(`{"code":4,"msg":"unknown CNI_COMMAND: VERSION"}`)
			return 1
		}
		if strings.Contains(name, "old") {
			fmt.Println(`{"cniVersion":"0.3.1","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1"]}`)
			return 0
		}
		fmt.Println(`{"cniVersion":"1.1.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}`)
		return 0
	}
	var conf fakeConf
	if err := json.Unmarshal(stdin, &conf); err != nil {
		fmt.Printf(`{"code":6,"msg":"fake: bad stdin: %v"}`+"\n", err)
		return 1
	}
	rec := record{Plugin: name, Command: cmd, Env: map[string]string{}, Stdin: stdin, Start: time.Now()}
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "CNI_") {
			rec.Env[k] = v
		}
	}
	act := conf.Fake.On[cmd]
	if act.SleepMS > 0 {
		time.Sleep(time.Duration(act.SleepMS) * time.Millisecond)
	}
	rec.End = time.Now()
	if conf.Fake.Log != "" {
		line, _ := json.Marshal(rec)
		f, err := os.OpenFile(conf.Fake.Log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err == nil {
			f.Write(append(line, '\n'))
			f.Close()
		}
	}
	os.Stderr.WriteString(act.Stderr)
	switch {
	case act.Silent:
	case act.ErrMsg != "":
		fmt.Printf(`{"code":%d,"msg":%q}`+"\n", act.ErrCode, act.ErrMsg)
		return 1
	case act.Stdout != "":
		fmt.Print(act.Stdout)
	case act.Result != nil:
		os.Stdout.Write(act.Result)
	case cmd == "ADD" && (act.Passthrough || conf.PrevResult != nil):
		os.Stdout.Write(conf.PrevResult)
	case cmd == "ADD":
		fmt.Printf(`{"cniVersion":%q,"interfaces":[{"name":"eth0","sandbox":%q}],"ips":[{"address":"10.0.0.2/24","interface":0}]}`,
			versionOf(stdin), os.Getenv("CNI_NETNS"))
	}
	if act.Exit != 0 {
		return act.Exit
	}
	return 0
}

func versionOf(conf []byte) string {
	var v struct {
		CNIVersion string `json:"cniVersion"`
	}
	json.Unmarshal(conf, &v)
	return v.CNIVersion
}
